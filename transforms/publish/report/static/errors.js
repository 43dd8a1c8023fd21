// Installed before the Vega bundle, so that even an error while loading it is recorded on the page.
(function(){
  var pending = [];
  function flush(){ var el = document.getElementById('report-errors'); if (!el) return;
    while (pending.length) { el.hidden = false; el.textContent += pending.shift() + '\n'; } }
  window.reportError = function(where, e){
    pending.push(where + ': ' + ((e && (e.stack || e.message)) || e)); flush(); };
  window.addEventListener('error', function(ev){ window.reportError('script', ev.error || ev.message); });
  window.addEventListener('unhandledrejection', function(ev){ window.reportError('promise', ev.reason); });
  document.addEventListener('DOMContentLoaded', flush);
})();
