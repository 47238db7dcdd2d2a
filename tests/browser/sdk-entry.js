// Bundled by esbuild for the browser test: the published @sentry/browser as a global.
import * as Sentry from "@sentry/browser";
window.Sentry = Sentry;
