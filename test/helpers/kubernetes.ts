/**
 * Checking Kubernetes manifests against the Kubernetes OpenAPI definitions, without a cluster, in
 * two ways that complete each other:
 *
 * - `validateManifest`: the `kubernetes-models` validators (compiled from the OpenAPI schemas of
 *   Kubernetes, and of prometheus-operator's CRDs): types, required fields, enums, formats. They
 *   accept fields the schema does not know, as JSON Schema does by default;
 * - `unknownFields`: the same definitions as TypeScript types, with each manifest written out as
 *   an object literal of its kind's type and type-checked: TypeScript refuses a property the type
 *   does not declare (a misspelt or misplaced field), at any depth, as the API server's strict
 *   field validation (kubectl's default) would.
 */
import { resolve } from 'node:path';
import ts from 'typescript';

export type Manifest = { apiVersion: string; kind: string; [key: string]: unknown };

/** The module of a kind's model: `kubernetes-models/apps/v1/Deployment`, ... */
function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion.startsWith('monitoring.coreos.com/'))
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

type ModelClass = new (data: unknown) => { validate(): void };

/** The schema's complaint about a manifest, or null when it is valid. */
export async function validateManifest(doc: Manifest): Promise<string | null> {
  const module = (await import(modelModule(doc.apiVersion, doc.kind))) as Record<string, ModelClass>;
  const Model = module[doc.kind];
  if (Model === undefined) throw new Error(`no model for ${doc.apiVersion} ${doc.kind}`);
  try {
    new Model(doc).validate();
    return null;
  } catch (err) {
    return `${doc.kind} ${JSON.stringify((doc.metadata as { name?: string } | undefined)?.name)}: ${(err as Error).message}`;
  }
}

const repoRoot = resolve(import.meta.dirname, '..', '..');

/**
 * Fields the OpenAPI definitions do not have, as TypeScript's excess-property errors (`Object
 * literal may only specify known properties, and 'x' does not exist in type ...`), one string per
 * error naming the manifest. Wrong types are reported too.
 */
export function unknownFields(docs: readonly Manifest[]): string[] {
  const file = resolve(repoRoot, 'test', '__manifests_typecheck__.ts');
  const lines: string[] = [];
  docs.forEach((doc, i) => {
    const name = `I${doc.kind}`;
    lines.push(`import type { ${name} as T${i} } from '${modelModule(doc.apiVersion, doc.kind)}';`);
    lines.push(`export const m${i}: T${i} = ${JSON.stringify(doc)};`);
  });
  const source = lines.join('\n') + '\n';
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (path, languageVersion, onError, shouldCreate) =>
    resolve(path) === file
      ? ts.createSourceFile(path, source, languageVersion)
      : getSourceFile(path, languageVersion, onError, shouldCreate);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (path) => resolve(path) === file || fileExists(path);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file === undefined || d.start === undefined) return message;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const index = Math.floor(line / 2);
    const doc = docs[index];
    const where = doc
      ? `${doc.kind} ${JSON.stringify((doc.metadata as { name?: string } | undefined)?.name)}`
      : '?';
    return `${where}: ${message}`;
  });
}
