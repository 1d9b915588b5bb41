import { fakeHost } from '../testing.js';

export const get = (key) => fakeHost.get(key);
export const all = () => fakeHost.all();
