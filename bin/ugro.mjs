#!/usr/bin/env node
// The `ugro` command. Runs the TypeScript sources through tsx so `npx ugro` works right after
// `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../controller/cli/main.ts');
process.exitCode = await main(process.argv);
