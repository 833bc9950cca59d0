import { memo, useMemo, useState } from "react";

export const DRAG_TYPE = "application/x-cxmpute-agent";

// Agents grouped by family, filtered by a search over id, name and description.
function AgentPalette({ agents, onAdd }) {
  const [q, setQ] = useState("");
  const groups = useMemo(() => {
    const needle = q.trim().toLowerCase();
    const out = {};
    for (const a of agents) {
      if (needle && !`${a.id} ${a.name} ${a.description}`.toLowerCase().includes(needle)) continue;
      (out[a.family] = out[a.family] || []).push(a);
    }
    return Object.entries(out).sort(([x], [y]) => x.localeCompare(y));
  }, [agents, q]);
  return (
    <aside className="palette" data-testid="palette">
      <input className="search" type="search" placeholder="Search agents" aria-label="Search agents"
             value={q} onChange={(e) => setQ(e.target.value)} />
      {groups.map(([family, items]) => (
        <section key={family} data-family={family}>
          <h4>{family}</h4>
          {items.map((a) => (
            <div key={a.id} className="palette-item" draggable data-agent={a.id} title={a.description}
                 onDragStart={(e) => { e.dataTransfer.setData(DRAG_TYPE, a.id); e.dataTransfer.effectAllowed = "move"; }}
                 onDoubleClick={() => onAdd(a.id)}>
              <span>{a.name}</span><code>{a.id}</code>
            </div>
          ))}
        </section>
      ))}
      {groups.length === 0 && <p className="muted">No agent matches “{q}”.</p>}
    </aside>
  );
}

// The catalogue is long and the canvas redraws on every drag step; the palette's props stay the same meanwhile.
export const Palette = memo(AgentPalette);
