/**
 * Writes the endpoint reference of docs/admin-api.md from the admin route table
 * (src/admin/reference.ts), then formats the file as the repository does.
 *
 *   npm run docs:admin            # write
 *   npm run docs:admin -- --check # exit 1 if the file is not current
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { ADMIN_ROUTES } from '../src/admin/admin-server.js';
import { adminReference, withReference } from '../src/admin/reference.js';

const file = fileURLToPath(new URL('../docs/admin-api.md', import.meta.url));
const current = readFileSync(file, 'utf8');
const next = await format(withReference(current, adminReference(ADMIN_ROUTES)), {
  ...(await resolveConfig(file)),
  filepath: file,
});
if (process.argv.includes('--check')) {
  if (next !== current) {
    process.stderr.write('docs/admin-api.md is not current: run npm run docs:admin\n');
    process.exit(1);
  }
} else {
  writeFileSync(file, next);
}
