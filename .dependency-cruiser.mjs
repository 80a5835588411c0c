// The layering of src/, checked by `npm run arch` (dependency-cruiser). From top to bottom:
//
//   cli, demo                  the programs
//   server                     listens, composes the request flow, hosts the admin API
//   admin                      the admin API
//   pipeline                   the stage list, and the runner of a route's stages
//   stages                     one folder per stage, and the stage contract (stages/stage.ts)
//   auth, ratelimit,           the capabilities the stages and the server use
//   upstream, observability
//   router, config, stores,    the foundation: they know nothing of the layers above
//   clock,
//   problem registry,
//   config sections            each capability's config.ts (its section of the config file and
//                              its cross-field checks): they live beside their owner but import
//                              only config/fields.ts and their own folder, so they belong to the
//                              foundation, below the code of the capability they configure
//
// A module imports from its own layer or below, never from above. Type-only imports count: a
// type names the module it comes from as much as a value does, and a cycle through types is
// still two modules that cannot be read apart.

const ENTRY = '^src/(cli|demo)/';
const SERVER = '^src/server/';
const ADMIN = '^src/admin/';
const PIPELINE = '^src/pipeline/';
const STAGES = '^src/stages/';
const CAPABILITIES = '^src/(auth|ratelimit|upstream|observability)/';
const FOUNDATION = '^src/((router|config|stores)/|clock[.]ts$)';
/** every problem code, its problem+json shape and its one writer */
const REGISTRY = '^src/problems/';
/** a capability's (or the server's) section of the config file, beside its owner */
const CONFIG_SECTIONS = '^src/(server|router|upstream|auth|ratelimit|observability|stores)/config[.]ts$';
/** logging is every layer's concern; the logger depends on nothing of ours */
const LOGGER = '^src/observability/logger[.]ts$';

const either = (...paths) => paths.map((p) => `(${p})`).join('|');
const LAYERED = either(ENTRY, SERVER, ADMIN, PIPELINE, STAGES, CAPABILITIES, FOUNDATION, REGISTRY);

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'console-apart',
      comment:
        'The admin web console (ui/) is browser code: it talks to the admin API over HTTP and ' +
        'imports nothing of the server, and the server serves its built files but never imports ' +
        'its source (no DOM types in the server, no server code in the bundle).',
      severity: 'error',
      from: { path: '^ui/' },
      to: { path: '^src/' },
    },
    {
      name: 'server-not-console-source',
      comment: 'The server serves the console build (dist/console), never the browser source.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^ui/' },
    },
    {
      name: 'no-circular',
      comment:
        'A cycle makes two modules one: neither can be read, tested or moved without the other, ' +
        'and which one is evaluated first depends on who imports them first.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'entry-points-on-top',
      comment:
        'cli and demo are the programs. What a lower layer needs from them (signal handling ' +
        'before start, say) belongs in that lower layer, for the program to import.',
      severity: 'error',
      from: { pathNot: ENTRY },
      to: { path: ENTRY },
    },
    {
      name: 'admin-below-server',
      comment:
        'The server hosts the admin API and hands it what it needs (readiness, reload, the ' +
        'services) through an interface the admin API declares; the admin API naming the ' +
        'server is how admin-server and gateway end up importing each other.',
      severity: 'error',
      from: { path: ADMIN },
      to: { path: SERVER },
    },
    {
      name: 'pipeline-below-server',
      comment:
        'The pipeline, the stages, the capabilities and the foundation run inside a server but ' +
        'do not know it: no sockets, no answering clients, no admin API. They hand results and ' +
        'problems back up; the server writes the response.',
      severity: 'error',
      from: { path: either(PIPELINE, STAGES, CAPABILITIES, FOUNDATION) },
      to: { path: either(SERVER, ADMIN), pathNot: CONFIG_SECTIONS },
    },
    {
      name: 'stages-below-pipeline',
      comment:
        'A stage implements the contract in stages/stage.ts and knows nothing of the runner or ' +
        'the stage list: that is what lets a stage be unit-tested alone, on a test context.',
      severity: 'error',
      from: { path: STAGES },
      to: { path: PIPELINE },
    },
    {
      name: 'capabilities-below-pipeline',
      comment:
        'A capability (authentication, rate limiting, the upstream proxy, observability) is ' +
        'used by stages and by the server; it does not know it runs in a pipeline, so it can ' +
        'be driven and tested without one. Problems it reports come from the registry.',
      severity: 'error',
      from: { path: either(CAPABILITIES, FOUNDATION) },
      to: { path: PIPELINE },
    },
    {
      name: 'capabilities-below-stages',
      comment:
        'A stage adapts a capability to the pipeline; the capability does not know its stage ' +
        '(nor any other one).',
      severity: 'error',
      from: { path: either(CAPABILITIES, FOUNDATION) },
      to: { path: STAGES },
    },
    {
      name: 'capabilities-apart',
      comment:
        'A capability may name another one’s types (an interface it implements or receives, ' +
        'like the metrics a limiter reports to) but not run its code: what one needs done by ' +
        'another is wired by the server, so each can change, and be tested, alone. The logger ' +
        'is the one shared runtime module.',
      severity: 'error',
      from: { path: CAPABILITIES },
      to: {
        path: CAPABILITIES,
        pathNot: either('^src/$1/', LOGGER),
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'foundation-at-the-bottom',
      comment:
        'router, config and stores are used by every capability; one of them importing a ' +
        'capability (a config check calling into auth, say) turns the layering upside down. A ' +
        'check that needs a capability belongs with the capability.',
      severity: 'error',
      from: { path: FOUNDATION },
      to: { path: CAPABILITIES, pathNot: CONFIG_SECTIONS },
    },
    {
      name: 'config-sections-import-fields-only',
      comment:
        'A config section sits in the foundation although it lives in its owner’s folder: it ' +
        'may use the shared field types and pure helpers of its own folder (a route pattern, ' +
        'the permission grammar), never the running code of another layer.',
      severity: 'error',
      from: { path: '^src/([^/]+)/config[.]ts$' },
      to: { path: '^src/', pathNot: either('^src/config/fields[.]ts$', '^src/$1/', REGISTRY) },
    },
    {
      name: 'registry-is-a-leaf',
      comment:
        'Every layer reports problems from the registry; it imports nothing of ours, or the ' +
        'layer it imports could no longer use it.',
      severity: 'error',
      from: { path: REGISTRY },
      to: { path: '^src/', pathNot: REGISTRY },
    },
    {
      name: 'every-module-in-a-layer',
      comment:
        'A new top-level folder under src/ must be given its place in the layers above (in ' +
        'this file), or none of the rules would apply to it.',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERED },
      to: {},
    },
    {
      name: 'every-import-in-a-layer',
      comment: 'The other side of every-module-in-a-layer: importing a module no layer holds.',
      severity: 'error',
      from: {},
      to: { path: '^src/', pathNot: LAYERED },
    },
  ],
  options: {
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
