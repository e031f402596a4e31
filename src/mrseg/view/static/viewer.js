"use strict";
// mrseg view: one slide in 1-6 synchronised OpenSeadragon panes, each with one model's heatmap,
// the ground-truth outlines and predicted contours drawn over it, a scale bar, and a probe that
// shows every model's probability under the pointer. Level-0 pixels are the one coordinate frame:
// the server renders overlay tiles on the slide's own Deep Zoom grid, so layers align exactly.
// The vector layers, scale bar and probe are in vectors.js (loaded first).

const OSD = window.OpenSeadragon;

const view = {
  slide: null,
  catalog: null,
  state: null,
  panes: [],
  truth: null,
  contours: {},
  probePoint: null,
  syncing: false,
};
window.mrsegView = view;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

// -- state: defaults, then the page's query string (?panes=2&layers=a,b&threshold=0.3...) ------------
function initialState(slide, catalog) {
  const q = new URLSearchParams(location.search);
  const d = catalog.defaults;
  const ids = slide.layers.map((l) => l.id);
  const wanted = (q.get("layers") || "").split(",").filter((id) => ids.includes(id));
  const layers = wanted.length ? wanted : ids;
  const maxPanes = Math.max(1, Math.min(6, ids.length));
  const number = (name, fallback) => (q.has(name) && isFinite(+q.get(name)) ? +q.get(name) : fallback);
  return {
    cmap: catalog.colormaps[q.get("cmap")] ? q.get("cmap") : d.cmap,
    threshold: Math.min(1, Math.max(0, number("threshold", d.threshold))),
    opacity: Math.min(1, Math.max(0, number("opacity", d.opacity))),
    nearZero: d.near_zero,
    mapKey: q.get("map") || "map",
    heatmap: q.get("heatmap") !== "0",
    truth: q.get("truth") !== "0" && !!slide.truth_url,
    contours: q.get("contours") === "1",
    panes: Math.min(maxPanes, Math.max(1, Math.round(number("panes", 1)))),
    maxPanes,
    paneLayers: Array.from({ length: 6 }, (_, i) => layers[i % Math.max(1, layers.length)] || null),
  };
}

function layerById(id) {
  return view.slide.layers.find((l) => l.id === id) || null;
}

function mapOf(layer) {
  if (!layer) return null;
  return layer.maps.find((m) => m.key === view.state.mapKey) || layer.maps[0];
}

function overlayUrl(map) {
  const s = view.state;
  return `${map.dzi}&cmap=${encodeURIComponent(s.cmap)}&threshold=${s.threshold.toFixed(3)}`;
}

// -- panes ---------------------------------------------------------------------------------------
function makePane(index) {
  const select = el("select", { class: "layer", "aria-label": `model of pane ${index + 1}` });
  for (const layer of view.slide.layers) select.append(el("option", { value: layer.id }, layer.id));
  const title = el("div", { class: "title" }, view.slide.layers.length ? select : "no prediction");
  const osdEl = el("div", { class: "osd", id: `osd-${index}` });
  const vectors = el("canvas", { class: "vectors" });
  const bar = el("div", { class: "bar" });
  const label = el("div", { class: "label" });
  const scale = el("div", { class: "scale" }, bar, label);
  const node = el("div", { class: "pane", "data-pane": String(index) }, osdEl, vectors, title, scale);
  const pane = { index, node, select, vectors, bar, label, viewer: null, slideItem: null, overlayItem: null };
  pane.layerId = view.state.paneLayers[index];
  if (pane.layerId) select.value = pane.layerId;
  select.addEventListener("change", () => {
    pane.layerId = select.value;
    view.state.paneLayers[index] = select.value;
    refreshOverlay(pane);
    loadContours().then(redrawAll);
  });
  return pane;
}

function openViewer(pane) {
  const viewer = OSD({
    element: pane.node.querySelector(".osd"),
    prefixUrl: "/static/openseadragon/images/",
    tileSources: view.slide.dzi,
    drawer: "canvas",
    showNavigator: pane.index === 0,
    navigatorPosition: "BOTTOM_RIGHT",
    showRotationControl: false,
    showFullPageControl: false,
    gestureSettingsMouse: { clickToZoom: false },
    maxZoomPixelRatio: 8,
    imageSmoothingEnabled: false,
    animationTime: 0.5,
    preserveImageSizeOnResize: true,
  });
  pane.viewer = viewer;
  viewer.addHandler("open", () => {
    pane.slideItem = viewer.world.getItemAt(0);
    refreshOverlay(pane);
    if (pane.index > 0 && view.panes[0].viewer) follow(view.panes[0], pane);
  });
  viewer.addHandler("viewport-change", () => sync(pane));
  viewer.addHandler("update-viewport", () => redraw(pane));
  viewer.addHandler("resize", () => redraw(pane));
  new OSD.MouseTracker({
    element: viewer.element,
    moveHandler: (event) => probeAt(pane, event.position),
    leaveHandler: () => {},
  });
}

function refreshOverlay(pane) {
  if (!pane.viewer || !pane.slideItem) return;
  const map = mapOf(layerById(pane.layerId));
  const old = pane.overlayItem;
  pane.overlayItem = null;
  if (!map) {
    if (old) pane.viewer.world.removeItem(old);
    return;
  }
  pane.viewer.addTiledImage({
    tileSource: overlayUrl(map),
    x: 0,
    width: 1,
    opacity: view.state.heatmap ? view.state.opacity : 0,
    success: (event) => {
      if (old) pane.viewer.world.removeItem(old);
      pane.overlayItem = event.item;
    },
  });
}

function follow(leader, pane) {
  pane.viewer.viewport.zoomTo(leader.viewer.viewport.getZoom(true), null, true);
  pane.viewer.viewport.panTo(leader.viewer.viewport.getCenter(true), true);
}

function sync(leader) {
  if (view.syncing) return;
  view.syncing = true;
  try {
    for (const pane of visiblePanes()) if (pane !== leader && pane.viewer && pane.slideItem) follow(leader, pane);
  } finally {
    view.syncing = false;
  }
}

function visiblePanes() {
  return view.panes.slice(0, view.state.panes);
}

function layoutPanes() {
  const area = document.getElementById("panes-area");
  area.className = `n${view.state.panes}`;
  view.panes.forEach((pane, i) => {
    const shown = i < view.state.panes;
    pane.node.style.display = shown ? "" : "none";
    if (shown && !pane.viewer) openViewer(pane);
  });
  const first = view.panes[0];
  for (const pane of visiblePanes()) if (pane !== first && pane.viewer && pane.slideItem) follow(first, pane);
}

// -- controls --------------------------------------------------------------------------------------
function colorbar() {
  const s = view.state;
  const stops = view.catalog.colormaps[s.cmap];
  document.getElementById("colorbar-gradient").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  document.getElementById("colorbar-below").style.width = `${100 * Math.max(s.threshold, s.nearZero)}%`;
}

function setOption(name, value) {
  const s = view.state;
  s[name] = value;
  if (name === "opacity" || name === "heatmap") {
    for (const pane of visiblePanes()) if (pane.overlayItem) pane.overlayItem.setOpacity(s.heatmap ? s.opacity : 0);
  } else if (name === "cmap" || name === "threshold" || name === "mapKey") {
    visiblePanes().forEach(refreshOverlay);
    if (name !== "cmap") {
      view.contours = {};
      loadContours().then(redrawAll);
    }
  } else if (name === "panes") {
    layoutPanes();
    loadContours().then(redrawAll);
  } else if (name === "truth") {
    loadTruth().then(redrawAll);
  } else if (name === "contours") {
    loadContours().then(redrawAll);
  }
  colorbar();
  document.getElementById("threshold-value").textContent = s.threshold.toFixed(2);
  document.getElementById("opacity-value").textContent = s.opacity.toFixed(2);
}
view.setOption = setOption;

function bindControls() {
  const s = view.state;
  const slide = view.slide;
  document.getElementById("slide-name").textContent = slide.name;
  document.title = `mrseg view: ${slide.name}`;
  if (slide.previous) document.getElementById("previous").href = `/view/${encodeURIComponent(slide.previous)}`;
  if (slide.next) document.getElementById("next").href = `/view/${encodeURIComponent(slide.next)}`;
  const panes = document.getElementById("panes");
  for (let n = 1; n <= s.maxPanes; n++) panes.append(el("option", { value: String(n) }, String(n)));
  panes.value = String(s.panes);
  panes.addEventListener("change", () => setOption("panes", +panes.value));
  const maps = document.getElementById("map");
  const keys = slide.layers.length ? slide.layers[0].maps : [];
  for (const m of keys) maps.append(el("option", { value: m.key }, m.name));
  maps.value = s.mapKey;
  document.getElementById("map-choice").style.display = keys.length > 1 ? "" : "none";
  maps.addEventListener("change", () => setOption("mapKey", maps.value));
  const cmap = document.getElementById("cmap");
  for (const name of Object.keys(view.catalog.colormaps)) cmap.append(el("option", { value: name }, name));
  cmap.value = s.cmap;
  cmap.addEventListener("change", () => setOption("cmap", cmap.value));
  for (const name of ["threshold", "opacity"]) {
    const input = document.getElementById(name);
    input.value = String(s[name]);
    input.addEventListener("input", () => (document.getElementById(`${name}-value`).textContent = (+input.value).toFixed(2)));
    input.addEventListener("change", () => setOption(name, +input.value));
  }
  for (const [id, name] of [["show-heatmap", "heatmap"], ["show-truth", "truth"], ["show-contours", "contours"]]) {
    const box = document.getElementById(id);
    box.checked = s[name];
    box.addEventListener("change", () => setOption(name, box.checked));
  }
  document.getElementById("show-truth").disabled = !slide.truth_url;
  setOption("cmap", s.cmap);
}

// Whether every tile of every visible pane is drawn (the browser tests and the screenshot script wait on it).
view.fullyLoaded = function () {
  return visiblePanes().every((pane) => {
    if (!pane.viewer || !pane.slideItem) return false;
    const count = pane.viewer.world.getItemCount();
    for (let i = 0; i < count; i++) if (!pane.viewer.world.getItemAt(i).getFullyLoaded()) return false;
    return !pane.layerId || !!pane.overlayItem;
  });
};

(async function main() {
  const slideId = decodeURIComponent(location.pathname.split("/").pop());
  [view.catalog, view.slide] = await Promise.all([
    getJSON("/api/catalog"),
    getJSON(`/api/slides/${encodeURIComponent(slideId)}`),
  ]);
  view.state = initialState(view.slide, view.catalog);
  const area = document.getElementById("panes-area");
  for (let i = 0; i < 6; i++) {
    const pane = makePane(i);
    view.panes.push(pane);
    area.append(pane.node);
  }
  bindControls();
  layoutPanes();
  await Promise.all([view.state.truth ? loadTruth() : null, loadContours()]);
  redrawAll();
  view.ready = true;
})();
