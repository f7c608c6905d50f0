// MathJax 3 configuration for the vae-lite site (read by Sphinx through mathjax_config_path).
// The Jupyter widgets' HTML manager typesets widget labels with MathJax 2's API,
// MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the small Hub below passes such calls to
// MathJax 3's typesetPromise, once MathJax has started.
(function () {
  var waiting = [];
  function whenReady(job) {
    var startup = window.MathJax && window.MathJax.startup;
    if (startup && startup.promise && window.MathJax.typesetPromise) {
      startup.promise.then(job);
    } else {
      waiting.push(job);
    }
  }
  var Hub = {
    Queue: function () {
      Array.prototype.forEach.call(arguments, function (call) {
        if (Array.isArray(call) && call[0] === "Typeset") {
          var element = call[2];
          whenReady(function () { return window.MathJax.typesetPromise(element ? [element] : undefined); });
        }
      });
    },
  };
  window.MathJax = {
    // textmacros: \_ and friends inside \text{...}, as the docstrings write \text{log\_var}
    loader: { load: ["[tex]/textmacros"] },
    tex: {
      inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true,
      packages: { "[+]": ["textmacros"] },
    },
    options: { processHtmlClass: "tex2jax_process|mathjax_process|math|output_area" },
    startup: {
      ready: function () {
        window.MathJax.startup.defaultReady();
        window.MathJax.Hub = Hub;
        window.MathJax.startup.promise.then(function () {
          waiting.splice(0).forEach(function (job) { job(); });
        });
      },
    },
    Hub: Hub,
  };
})();
