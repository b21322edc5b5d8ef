/** `npm run schema`: writes controller/api/trainingjob.schema.json for editors. */
import { writeFileSync } from 'node:fs';
import { trainingJobJsonSchema } from './trainingjob.ts';

const out = new URL('./trainingjob.schema.json', import.meta.url);
writeFileSync(out, `${JSON.stringify(trainingJobJsonSchema(), null, 2)}\n`);
console.log(`wrote ${out.pathname}`);
