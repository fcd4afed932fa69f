// Sends events with Splunk's own JavaScript HEC library (npm splunk-logging), unmodified, as an
// application would: one batch of N events to <url> (default path /services/collector/event/1.0).
// Usage: node splunk_logging_client.js URL TOKEN COUNT; prints the server's reply body as JSON.
"use strict";
const SplunkLogger = require("splunk-logging").Logger;

const [url, token, count] = process.argv.slice(2);
const logger = new SplunkLogger({ token: token, url: url, maxBatchCount: 0, maxRetries: 0 });
logger.error = function (err, context) {
    console.log(JSON.stringify({ error: err.message, code: err.code }));
    process.exitCode = 1;
};
for (let i = 0; i < Number(count); i++) {
    logger.send({
        message: "splunk-logging event " + i,
        metadata: { host: "node-client", source: "splunk-logging", sourcetype: "nodejs" },
        severity: "warning",
    });
}
logger.flush(function (err, response, body) {
    if (err) {
        console.error("flush failed: " + err);
        process.exitCode = 1;
        return;
    }
    console.log(JSON.stringify({ status: response.statusCode, body: body }));
});
