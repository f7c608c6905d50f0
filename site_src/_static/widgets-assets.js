// Loaded after require.js and just before the widgets' HTML manager (embed-amd.js). The manager
// finds its Font Awesome files beside the AMD module it defines; require.js would place that module
// relative to the page, so it is mapped here to the site's own copy.
(function () {
  var dist = new URL("npm/@jupyter-widgets/html-manager/dist", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = dist + "/";
  window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": dist } });
})();
