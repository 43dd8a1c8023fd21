// Draws every chart (Vega-Embed, the page's locale), marks each container data-rendered, and sorts the tables.
(function(){
  var report = window.reportError;
  var specs = JSON.parse(document.getElementById('report-specs').textContent);
  var locale = JSON.parse(document.getElementById('report-locale').textContent);
  if (typeof vegaEmbed !== 'function') { report('vega', 'vegaEmbed is not loaded'); return; }
  Object.keys(specs).forEach(function(id){
    var el = document.getElementById(id);
    var logger = {_l: 2, level: function(l){ if (l === undefined) return this._l; this._l = l; return this; },
                  error: function(){ report(id, Array.prototype.join.call(arguments, ' ')); return this; },
                  warn: function(){ el.setAttribute('data-warnings', (el.getAttribute('data-warnings') || '') + Array.prototype.join.call(arguments, ' ') + '; '); return this; },
                  info: function(){ return this; }, debug: function(){ return this; }};
    vegaEmbed(el, specs[id], {renderer: 'svg', actions: false, formatLocale: locale, logger: logger})
      .then(function(r){ el.setAttribute('data-rendered', 'ok'); })
      .catch(function(e){ el.setAttribute('data-rendered', 'error'); report(id, e); });
  });
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths = table.querySelectorAll('thead th');
    ths.forEach(function(th, i){
      th.querySelector('button').addEventListener('click', function(){
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        ths.forEach(function(o){ o.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var num = th.getAttribute('data-type') === 'num';
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        rows.sort(function(a, b){
          var x = a.cells[i].getAttribute('data-sort') || a.cells[i].textContent;
          var y = b.cells[i].getAttribute('data-sort') || b.cells[i].textContent;
          var c = num ? (parseFloat(x) - parseFloat(y)) : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function(r){ table.tBodies[0].appendChild(r); });
      });
    });
  });
})();
