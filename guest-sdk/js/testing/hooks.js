// Module resolution hooks (see register.js): `rmq:listener/<iface>@0.2.0` -> testing/<iface>.js.
const IFACES = new Set(['log', 'config', 'producer']);

export async function resolve(specifier, context, next) {
  const m = /^rmq:listener\/([a-z]+)@0\.2\.\d+$/.exec(specifier);
  if (m && IFACES.has(m[1])) {
    return { url: new URL(`./${m[1]}.js`, import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
