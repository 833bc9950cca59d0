import { defineConfig } from "vite";

// The platform serves the page at /console and the bundle under /console/; JSX goes through esbuild directly.
// The wallet and session code is the builder's own (../builder/src), so both pages sign in one way.
export default defineConfig({
  base: "/console/",
  esbuild: { jsx: "automatic" },
  build: { outDir: "../static/console", emptyOutDir: true, chunkSizeWarningLimit: 1000 },
});
