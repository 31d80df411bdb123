//! NumPy's default `argsort` (kind `quicksort`: an introsort — median-of-3 partitions, insertion
//! sort below 17 elements, heapsort past a depth of 2·log2 n; `npysort/quicksort.cpp` in NumPy
//! ≤ 1.26, which the official evaluators ran on) for f32 keys. It is not stable: tied scores come
//! out in the order this algorithm leaves them, and an AP can depend on that order when a tie
//! mixes true and false positives, so the evaluators here sort exactly as NumPy did.
//! `tests/fixtures/npsort_golden.json` holds NumPy's own permutations for arrays full of ties.

/// NumPy's order for floats: NaN after everything.
fn less(a: f32, b: f32) -> bool {
    a < b || (b.is_nan() && !a.is_nan())
}

/// Indices that sort `v` ascending, as `np.argsort(v)` returns them.
pub fn argsort(v: &[f32]) -> Vec<usize> {
    let mut t: Vec<usize> = (0..v.len()).collect();
    if v.len() < 2 {
        return t;
    }
    let key = |t: &[usize], i: isize| v[t[i as usize]];
    let (mut pl, mut pr) = (0isize, v.len() as isize - 1);
    let mut stack: Vec<(isize, isize, i32)> = Vec::new();
    let mut depth = 2 * (usize::BITS - 1 - v.len().leading_zeros()) as i32;
    loop {
        if depth < 0 {
            heapsort(v, &mut t[pl as usize..=pr as usize]);
        } else {
            while pr - pl > 15 {
                let pm = pl + ((pr - pl) >> 1);
                if less(key(&t, pm), key(&t, pl)) {
                    t.swap(pm as usize, pl as usize);
                }
                if less(key(&t, pr), key(&t, pm)) {
                    t.swap(pr as usize, pm as usize);
                }
                if less(key(&t, pm), key(&t, pl)) {
                    t.swap(pm as usize, pl as usize);
                }
                let vp = key(&t, pm);
                let (mut pi, mut pj) = (pl, pr - 1);
                t.swap(pm as usize, pj as usize);
                loop {
                    pi += 1;
                    while less(key(&t, pi), vp) {
                        pi += 1;
                    }
                    pj -= 1;
                    while less(vp, key(&t, pj)) {
                        pj -= 1;
                    }
                    if pi >= pj {
                        break;
                    }
                    t.swap(pi as usize, pj as usize);
                }
                t.swap(pi as usize, (pr - 1) as usize);
                // the larger part waits on the stack; both continue one level deeper
                depth -= 1;
                if pi - pl < pr - pi {
                    stack.push((pi + 1, pr, depth));
                    pr = pi - 1;
                } else {
                    stack.push((pl, pi - 1, depth));
                    pl = pi + 1;
                }
            }
            for i in pl + 1..=pr {
                let vi = t[i as usize];
                let vp = v[vi];
                let mut j = i;
                while j > pl && less(vp, key(&t, j - 1)) {
                    t[j as usize] = t[(j - 1) as usize];
                    j -= 1;
                }
                t[j as usize] = vi;
            }
        }
        match stack.pop() {
            Some((l, r, d)) => (pl, pr, depth) = (l, r, d),
            None => break,
        }
    }
    t
}

/// NumPy's `aheapsort` on the index slice `t` (1-based heap).
fn heapsort(v: &[f32], t: &mut [usize]) {
    let n = t.len();
    let at = |t: &[usize], i: usize| v[t[i - 1]];
    let sift = |t: &mut [usize], mut i: usize, n: usize, tmp: usize| {
        let mut j = i << 1;
        while j <= n {
            if j < n && less(at(t, j), at(t, j + 1)) {
                j += 1;
            }
            if less(v[tmp], at(t, j)) {
                t[i - 1] = t[j - 1];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        t[i - 1] = tmp;
    };
    for l in (1..=n >> 1).rev() {
        let tmp = t[l - 1];
        sift(t, l, n, tmp);
    }
    let mut n = n;
    while n > 1 {
        let tmp = t[n - 1];
        t[n - 1] = t[0];
        n -= 1;
        sift(t, 1, n, tmp);
    }
}
