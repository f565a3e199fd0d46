// Shared by every view module: gptoss_lab.widgets.esm() puts this file in front of chat.js and
// routing.js (anywidget loads one module from a blob URL, so a relative import cannot work).

function h(tag, cls, text) {
  // A DOM element with a class and text content (never innerHTML).
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function expertColor(e) {
  // Golden-ratio hue walk, the same as gptoss_lab's matplotlib expert colormap.
  const hue = (e * 0.618034) % 1, s = 0.55 + (0.25 * (e % 3)) / 2, v = 0.95 - (0.2 * (Math.floor(e / 3) % 3)) / 2;
  const i = Math.floor(hue * 6), f = hue * 6 - i, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return `rgb(${Math.round(r * 255)},${Math.round(g * 255)},${Math.round(b * 255)})`;
}
