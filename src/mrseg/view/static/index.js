"use strict";
// The slide list: a card per slide (thumbnail, name, size, models, truth) linking to its viewer.
(async function () {
  const response = await fetch("/api/catalog");
  const catalog = await response.json();
  const main = document.getElementById("slides");
  const n = catalog.slides.length;
  document.getElementById("summary").textContent =
    `${n} slide${n === 1 ? "" : "s"}, ${catalog.predictions.length} model${catalog.predictions.length === 1 ? "" : "s"}`;
  for (const s of catalog.slides) {
    const card = document.createElement("a");
    card.className = "card";
    card.href = s.view;
    card.dataset.slide = s.id;
    const img = document.createElement("img");
    img.src = s.thumbnail;
    img.alt = s.name;
    const title = document.createElement("div");
    title.className = "name";
    title.textContent = s.name;
    const mm = (v) => (v * s.mpp / 1000).toFixed(1);
    const facts = document.createElement("div");
    facts.className = "facts";
    facts.textContent =
      `${s.width} × ${s.height} px · ${s.mpp.toFixed(3)} µm/px · ${mm(s.width)} × ${mm(s.height)} mm · ` +
      `${s.predictions.length} model${s.predictions.length === 1 ? "" : "s"}` + (s.truth ? " · truth" : "");
    card.append(img, title, facts);
    main.append(card);
  }
})();
