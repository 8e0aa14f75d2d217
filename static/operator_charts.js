// Small charts for the operator dashboard: SVG sparklines over a call and per-turn latency bars.
// Plain DOM, no library; each draw replaces only the chart it is given.

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 200;
const HEIGHT = 48;

// Draws one or two series (arrays of numbers or nulls) into `svg`, scaled to [min, max].
export function sparkline(svg, series, { min = 0, max = null, floorMax = 1 } = {}) {
  const values = series.flat().filter((v) => typeof v === "number");
  const top = max ?? Math.max(floorMax, ...values);
  const span = top - min || 1;
  svg.replaceChildren();
  series.forEach((points, index) => {
    if (points.length === 0) return;
    const step = points.length > 1 ? WIDTH / (points.length - 1) : 0;
    let d = "";
    let pen = false;
    points.forEach((v, i) => {
      if (typeof v !== "number") {
        pen = false;
        return;
      }
      const x = (i * step).toFixed(1);
      const y = (HEIGHT - 2 - ((Math.min(v, top) - min) / span) * (HEIGHT - 4)).toFixed(1);
      d += `${pen ? "L" : "M"}${x},${y}`;
      pen = true;
    });
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", `line line--${index}`);
    svg.append(path);
  });
}

// One turn's latency broken down into the pipeline's stages, in ms.
export function turnSegments(turn) {
  const n = (v) => (typeof v === "number" && v > 0 ? v : 0);
  const llm = n(turn.llm_first_token_ms);
  const clause = Math.max(0, n(turn.first_clause_ms) - llm);
  const parts = [
    ["vad", n(turn.vad_wait_ms)],
    ["stt", n(turn.stt_ms)],
    ["llm", llm],
    ["clause", clause],
    ["tts", n(turn.tts_first_audio_ms)],
  ];
  const total = n(turn.voice_to_voice_ms ?? turn.first_frame_sent_ms);
  const known = parts.reduce((sum, [, ms]) => sum + ms, 0);
  if (total > known) parts.push(["other", total - known]);
  return { parts, total: Math.max(total, known) };
}

// Renders the list of turns as stacked horizontal bars on a shared scale.
export function turnBars(list, turns) {
  const rows = turns.slice(-20).map((turn) => ({ turn, ...turnSegments(turn) }));
  const scale = Math.max(1000, ...rows.map((r) => r.total));
  list.replaceChildren(
    ...rows.map(({ turn, parts, total }, i) => {
      const li = document.createElement("li");
      li.className = "turn";
      if (turn.status === "cancelled") li.classList.add("turn--cancelled");
      const label = document.createElement("span");
      label.className = "turn__label";
      label.textContent = `#${turns.length - rows.length + i + 1}`;
      const bar = document.createElement("span");
      bar.className = "turn__bar";
      for (const [kind, ms] of parts) {
        if (ms <= 0) continue;
        const seg = document.createElement("i");
        seg.className = `seg seg--${kind}`;
        seg.style.width = `${(100 * ms) / scale}%`;
        seg.title = `${kind}: ${Math.round(ms)} ms`;
        bar.append(seg);
      }
      const value = document.createElement("span");
      value.className = "turn__value";
      let text = total > 0 ? `${Math.round(total)} ms` : "–";
      if (turn.status === "cancelled") {
        const stop = turn.barge_in_stop_ms;
        text += typeof stop === "number" ? ` · barge-in, stopped in ${Math.round(stop)} ms` : " · cancelled";
      }
      value.textContent = text;
      li.append(label, bar, value);
      return li;
    }),
  );
}
