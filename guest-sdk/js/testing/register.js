// `node --import <sdk>/testing/register.js --test`: serves the component's host imports
// (`rmq:listener/*@0.2.0`) from the fake host of testing.js, so listener modules load in node.
import { register } from 'node:module';

register('./hooks.js', import.meta.url);
