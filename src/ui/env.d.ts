/** CSS files are bundled by esbuild (src/ui/build.ts); importing one has no value. */
declare module '*.css';
