import { useEffect, useRef } from "react";
import uPlot from "uplot";

// A line chart over time: `points` are [unix seconds, value] pairs, drawn with uPlot (bundled, no CDN).
export default function Chart({ points, label, testId }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || points.length === 0) return undefined;
    const data = [points.map((p) => p[0]), points.map((p) => p[1])];
    const plot = new uPlot(
      {
        width: Math.max(300, box.current.clientWidth), height: 220,
        series: [{}, { label, stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2 }],
        axes: [{}, { size: 80 }],
      },
      data, box.current,
    );
    return () => plot.destroy();
  }, [points, label]);
  return (
    <div ref={box} className="chart" data-testid={testId}>
      {points.length === 0 && <p className="hint">Nothing to chart yet.</p>}
    </div>
  );
}
