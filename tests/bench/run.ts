// `npm run bench`: not written yet (issue 3 asks for launch latency p50/p99 beside bare ssh,
// cancel latency, controller RSS and idle CPU with 1000 job files). Say so instead of faking numbers.
console.error('ugro bench: not implemented yet (see issue 3); no numbers are printed rather than invented ones');
process.exitCode = 1;
