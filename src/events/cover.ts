// Is every topic a pattern matches also matched by a grant? (issue 10: a manifest `subscribes` pattern must be
// covered by `permissions.events.subscribe`.) Decided on the patterns themselves, word by word, memoised, so it
// is quadratic in words at worst. Where coverage depends on topics never being empty it answers "not covered":
// the safe side (the extension is refused, with both patterns named).
export function patternCovers(grant: string, pattern: string): boolean {
  const g = grant.split('.');
  const p = pattern.split('.');
  const memo = new Map<number, boolean>();
  const covers = (i: number, j: number): boolean => {
    const key = i * (p.length + 1) + j;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    if (j === p.length) result = g.slice(i).every((w) => w === '#');
    else if (i === g.length) result = false;
    else if (g[i] === '#') result = covers(i + 1, j) || covers(i, j + 1);
    else if (p[j] === '#') result = false;
    else if (p[j] === '*') result = g[i] === '*' && covers(i + 1, j + 1);
    else result = (g[i] === '*' || g[i] === p[j]) && covers(i + 1, j + 1);
    memo.set(key, result);
    return result;
  };
  return covers(0, 0);
}
