// Renders an output value: images, audio, links to files, markdown, text or JSON.

const IMAGE = /^(data:image\/|https?:\/\/\S+\.(png|jpe?g|gif|webp|svg)(\?\S*)?$|\/\S+\.(png|jpe?g|gif|webp|svg)$)/i;
const AUDIO = /^(data:audio\/|https?:\/\/\S+\.(mp3|wav|ogg|m4a)(\?\S*)?$|\/\S+\.(mp3|wav|ogg|m4a)$)/i;
const LINK = /^(https?:\/\/\S+|\/v1\/\S+)$/;
const MARKDOWN = /(^#{1,6} |\n#{1,6} |\*\*[^*]+\*\*|^\s*[-*] |\n\s*[-*] |\[[^\]]+\]\([^)]+\))/;

function inline(text) {
  const parts = [];
  const re = /(\*\*([^*]+)\*\*|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\))/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    if (m[2]) parts.push(<strong key={m.index}>{m[2]}</strong>);
    else if (m[3]) parts.push(<code key={m.index}>{m[3]}</code>);
    else parts.push(<a key={m.index} href={m[5]} target="_blank" rel="noreferrer">{m[4]}</a>);
    last = re.lastIndex;
  }
  parts.push(text.slice(last));
  return parts;
}

function Markdown({ text }) {
  const blocks = [];
  let list = [];
  const flush = () => { if (list.length) blocks.push(<ul key={blocks.length}>{list}</ul>); list = []; };
  text.split("\n").forEach((line, i) => {
    const h = /^(#{1,6}) (.*)$/.exec(line);
    const li = /^\s*[-*] (.*)$/.exec(line);
    if (li) { list.push(<li key={i}>{inline(li[1])}</li>); return; }
    flush();
    if (h) { const H = `h${Math.min(6, h[1].length + 2)}`; blocks.push(<H key={i}>{inline(h[2])}</H>); }
    else if (line.trim()) blocks.push(<p key={i}>{inline(line)}</p>);
  });
  flush();
  return <div className="markdown">{blocks}</div>;
}

export function Value({ value }) {
  if (value === null || value === undefined) return <span className="muted">empty</span>;
  if (typeof value === "string") {
    if (IMAGE.test(value)) return <img className="out-image" src={value} alt="output" />;
    if (AUDIO.test(value)) return <audio controls src={value} />;
    if (LINK.test(value)) return <a href={value} target="_blank" rel="noreferrer">{value}</a>;
    if (MARKDOWN.test(value)) return <Markdown text={value} />;
    return <pre className="out-text">{value}</pre>;
  }
  if (typeof value === "number" || typeof value === "boolean") return <code>{String(value)}</code>;
  return <pre className="out-json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Fields({ data }) {
  if (!data || typeof data !== "object") return <Value value={data} />;
  return (
    <dl className="fields">
      {Object.entries(data).map(([k, v]) => (
        <div key={k}><dt>{k}</dt><dd><Value value={v} /></dd></div>
      ))}
    </dl>
  );
}
