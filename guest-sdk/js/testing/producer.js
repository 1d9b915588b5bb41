import { fakeHost } from '../testing.js';

export const send = (msg) => fakeHost.send(msg);
