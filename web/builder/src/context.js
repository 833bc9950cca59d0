import { createContext } from "react";

export const BuilderContext = createContext({ agents: {}, runView: null, problems: [], edges: [] });
