import { fakeHost } from '../testing.js';

export const log = (level, message) => fakeHost.log(level, message);
