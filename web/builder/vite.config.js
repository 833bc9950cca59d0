import { defineConfig } from "vite";

// The platform serves the bundle under /builder/ (index at /); JSX goes through esbuild directly.
export default defineConfig({
  base: "/builder/",
  esbuild: { jsx: "automatic" },
  build: { outDir: "../static/builder", emptyOutDir: true, chunkSizeWarningLimit: 1000 },
});
