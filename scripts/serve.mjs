// Serve the page on http://127.0.0.1:$PORT/ (default 8080) until Ctrl-C: `bash scripts/serve.sh`.
import { startServer } from "./harness.mjs";

const { url } = await startServer({ port: Number(process.env.PORT ?? 8080) });
console.log(`Serving the page at ${url}/  (Ctrl-C stops)`);
