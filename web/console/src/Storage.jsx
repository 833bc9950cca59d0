import { useState } from "react";
import { authHeaders, get, post, request, short, when } from "./client.js";
import { Failed, Field, useLoad, useOutcome } from "./common.jsx";

const size = (n) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(2)} GiB`);
const policy = (p) => (p.kind === "erasure" ? `erasure ${p.k}-of-${p.n}` : p.copies === 1 ? "1 copy" : `${p.copies} replicas`);

// XMLHttpRequest rather than fetch: only it reports an upload's progress.
function upload(file, query, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/storage/files?${query}`);
    for (const [k, v] of Object.entries(authHeaders({ "content-type": "application/octet-stream" }))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      const data = JSON.parse(xhr.responseText || "{}");
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new Error(data.field ? `${data.field}: ${data.detail}` : data.detail ?? `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("upload failed: the connection broke"));
    xhr.send(file);
  });
}

export default function Storage() {
  const files = useLoad(() => get("/v1/storage/files"), [], 15_000);
  const [chosen, setChosen] = useState(null);
  const [options, setOptions] = useState({ policy: "", private: false });
  const [progress, setProgress] = useState(null);
  const [run, outcome] = useOutcome();
  const send = run(async () => {
    if (!chosen) throw new Error("file: choose a file to upload");
    const query = new URLSearchParams({ name: chosen.name, private: String(options.private) });
    if (options.policy) query.set("policy", options.policy);
    setProgress(0);
    const stats = await upload(chosen, query, setProgress);
    setProgress(1);
    files.reload();
    return `Stored ${stats.file.name} as ${stats.file.cid} (${stats.new_blocks} new blocks, ${stats.reused_blocks} already stored)`;
  });
  const download = (f) => run(async () => {
    const res = await fetch(`/v1/storage/files/${f.cid}`, { headers: authHeaders() });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail ?? `download failed (${res.status})`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await res.blob());
    link.download = f.name ?? f.cid;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    return `Downloaded ${f.name ?? f.cid}`;
  });
  const share = (f) => run(async () => {
    await post(`/v1/storage/files/${f.cid}/${f.public ? "unpublish" : "publish"}`);
    files.reload();
    return f.public ? `${f.name ?? f.cid} is yours only again` : `Anyone with the CID can read it: ${location.origin}/v1/storage/files/${f.cid}`;
  });
  const remove = (f) => run(async () => {
    await request("DELETE", `/v1/storage/files/${f.cid}`);
    files.reload();
    return `Deleted ${f.name ?? f.cid}`;
  });
  return (
    <section className="page storage">
      <h1>Storage</h1>
      <form className="filters" onSubmit={send}>
        <Field label="File"><input aria-label="File" type="file" onChange={(e) => { setChosen(e.target.files[0] ?? null); setProgress(null); }} /></Field>
        <Field label="Redundancy">
          <select aria-label="Redundancy" value={options.policy} onChange={(e) => setOptions({ ...options, policy: e.target.value })}>
            <option value="">platform default</option><option value="1">1 copy</option><option value="3">3 replicas</option><option value="4/6">erasure 4-of-6</option>
          </select>
        </Field>
        <label className="field check"><input type="checkbox" checked={options.private} onChange={(e) => setOptions({ ...options, private: e.target.checked })} /><span>Encrypt (private)</span></label>
        <div className="actions"><button type="submit">Upload</button></div>
      </form>
      {progress !== null && (
        <p><progress data-testid="upload-progress" max="1" value={progress} /> <span data-testid="upload-percent">{Math.round(progress * 100)}%</span></p>
      )}
      {outcome}
      <Failed error={files.error} />
      <table data-testid="files">
        <thead><tr><th>Name</th><th>CID</th><th>Size</th><th>Redundancy</th><th>Chunks</th><th>Flags</th><th>Stored</th><th /></tr></thead>
        <tbody>
          {(files.data ?? []).map((f) => (
            <tr key={f.cid} data-file={f.name ?? f.cid}>
              <td>{f.name ?? "(unnamed)"}</td><td title={f.cid}>{short(f.cid)}</td><td>{size(f.size)}</td>
              <td>{policy(f.policy)}</td><td>{f.chunks}</td>
              <td>{[f.private && "encrypted", f.public && "shared", f.pinned && "pinned", f.kind === "dir" && "folder"].filter(Boolean).join(", ")}</td>
              <td>{when(f.created_at)}</td>
              <td className="actions">
                {f.kind === "file" && <button onClick={download(f)}>Download</button>}
                <button onClick={share(f)}>{f.public ? "Unshare" : "Share"}</button>
                <button onClick={remove(f)}>Delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
