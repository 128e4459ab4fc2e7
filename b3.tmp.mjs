const o = Object.fromEntries(Array.from({ length: 200000 }, (_, i) => ['key' + i, 1]));
for (let r = 0; r < 3; r++) {
let t = performance.now(); let n = 0; for (const k in o) n += k.length; console.log('forin', performance.now() - t);
t = performance.now(); n = Object.keys(o).length; console.log('keys', performance.now() - t);
}
