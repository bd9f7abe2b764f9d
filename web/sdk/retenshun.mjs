// ES module entry for retenshun.js: import retenshun, { createClient } from "/sdk/retenshun.mjs".
// retenshun.js has no import/export syntax so it also works as a classic <script>; imported
// here it runs once and, in a browser, puts its API on globalThis.retenshun. In Node it is a
// CommonJS module and its exports arrive as the namespace's default.
import * as loaded from "./retenshun.js";

const retenshun = (loaded && loaded.default) || globalThis.retenshun;

export default retenshun;
export const createClient = retenshun.createClient;
export const createInstance = retenshun.createInstance;
export const RetenshunError = retenshun.RetenshunError;
export const init = retenshun.init;
export const track = retenshun.track;
export const identify = retenshun.identify;
export const page = retenshun.page;
export const alias = retenshun.alias;
export const group = retenshun.group;
export const reset = retenshun.reset;
export const flush = retenshun.flush;
export const setUserToken = retenshun.setUserToken;
export const inbox = retenshun.inbox;
export const push = retenshun.push;
export const version = retenshun.version;
