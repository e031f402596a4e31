"use strict";
// mrseg view, the layers drawn in the browser: ground-truth outlines, predicted contours and the probe mark
// on one canvas per pane (in level-0 coordinates), the scale bar, and the probe. Loaded before viewer.js,
// whose globals (view, el, getJSON, visiblePanes, layerById, mapOf) these functions use when called.

const NICE_UM = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];

// -- vector layers, probe mark, scale bar (one canvas per pane, in level-0 coordinates) ------------
function imageTransform(pane) {
  const item = pane.slideItem;
  const o = item.imageToViewerElementCoordinates(new OSD.Point(0, 0));
  const p = item.imageToViewerElementCoordinates(new OSD.Point(1000, 0));
  return { x: o.x, y: o.y, scale: (p.x - o.x) / 1000 };
}

function tracePath(ctx, outline) {
  ctx.beginPath();
  for (const ring of outline.rings) {
    ctx.moveTo(ring[0], ring[1]);
    for (let i = 2; i < ring.length; i += 2) ctx.lineTo(ring[i], ring[i + 1]);
    ctx.closePath();
  }
}

// Ground truth: solid lines in the class colour. Predicted contours: black-and-white dashes (visible on
// any background, never mistaken for the truth).
function drawOutlines(ctx, outlines, predicted, scale) {
  for (const outline of outlines) {
    tracePath(ctx, outline);
    if (predicted) {
      ctx.setLineDash([]);
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      ctx.setLineDash([6 / scale, 4 / scale]);
      ctx.strokeStyle = "#000000";
    } else {
      ctx.setLineDash([]);
      ctx.strokeStyle = outline.color;
    }
    ctx.stroke();
  }
}

function redraw(pane) {
  if (!pane.slideItem) return;
  const canvas = pane.vectors;
  const ratio = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * ratio);
  const h = Math.round(canvas.clientHeight * ratio);
  if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const t = imageTransform(pane);
  ctx.setTransform(t.scale * ratio, 0, 0, t.scale * ratio, t.x * ratio, t.y * ratio);
  ctx.lineWidth = 2 / t.scale;
  if (view.state.truth && view.truth) drawOutlines(ctx, view.truth, false, t.scale);
  const contours = view.contours[pane.layerId];
  if (view.state.contours && contours) drawOutlines(ctx, contours, true, t.scale);
  if (view.probePoint) {
    const [x, y] = view.probePoint;
    const r = 10 / t.scale;
    ctx.strokeStyle = "#00e5ff";
    ctx.setLineDash([]);
    ctx.beginPath();
    ctx.moveTo(x - r, y);
    ctx.lineTo(x + r, y);
    ctx.moveTo(x, y - r);
    ctx.lineTo(x, y + r);
    ctx.stroke();
  }
  scaleBar(pane, t.scale);
}

function redrawAll() {
  visiblePanes().forEach(redraw);
}

function scaleBar(pane, screenPerL0) {
  const umPerScreenPx = view.slide.mpp / screenPerL0;
  const um = NICE_UM.find((v) => v / umPerScreenPx >= 60) || NICE_UM[NICE_UM.length - 1];
  pane.bar.style.width = `${Math.round(um / umPerScreenPx)}px`;
  const length = um >= 1000 ? `${um / 1000} mm` : `${um} µm`;
  pane.label.textContent = `${length} · ${umPerScreenPx.toPrecision(3)} µm/px`;
}

// -- probe -----------------------------------------------------------------------------------------
let probeBusy = false;
let probeNext = null;

function probeAt(pane, position) {
  if (!pane.slideItem) return;
  const p = pane.slideItem.viewerElementToImageCoordinates(position);
  view.probePoint = [p.x, p.y];
  redrawAll();
  probeNext = p;
  if (!probeBusy) runProbe();
}

async function runProbe() {
  probeBusy = true;
  try {
    while (probeNext) {
      const p = probeNext;
      probeNext = null;
      const data = await getJSON(`${view.slide.probe}?x=${p.x.toFixed(2)}&y=${p.y.toFixed(2)}`);
      showProbe(data);
    }
  } finally {
    probeBusy = false;
  }
}

function showProbe(data) {
  const where = document.getElementById("probe-where");
  where.textContent = data.inside
    ? `x ${data.x.toFixed(0)}, y ${data.y.toFixed(0)} px · ${data.um[0].toFixed(1)}, ${data.um[1].toFixed(1)} µm`
    : "outside the slide";
  const table = document.getElementById("probe-values");
  table.replaceChildren();
  for (const layer of view.slide.layers) {
    for (const map of layer.maps) {
      const value = data.values[layer.id] ? data.values[layer.id][map.key] : null;
      const name = layer.maps.length > 1 ? `${layer.id} · ${map.name}` : layer.id;
      const text = value === null || value === undefined ? "–" : value.toFixed(3);
      const row = el("tr", { "data-layer": layer.id, "data-map": map.key }, el("td", {}, name));
      row.append(el("td", { class: "value" }, text));
      table.append(row);
    }
  }
}

// -- vector data -----------------------------------------------------------------------------------
async function loadTruth() {
  if (view.slide.truth_url && !view.truth) view.truth = (await getJSON(view.slide.truth_url)).outlines;
}

async function loadContours() {
  if (!view.state.contours) return;
  const wanted = new Set(visiblePanes().map((p) => p.layerId).filter(Boolean));
  const jobs = [...wanted].map(async (id) => {
    const map = mapOf(layerById(id));
    const url = `${map.contours}?threshold=${view.state.threshold.toFixed(3)}`;
    view.contours[id] = (await getJSON(url)).outlines;
  });
  await Promise.all(jobs);
}
