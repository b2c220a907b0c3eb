/* dz/dalpha for samples z of Gamma(alpha, 1): the implicit reparameterization gradient of Figurnov,
 * Mohamed & Mnih 2018 (arXiv:1805.08498), -dP(alpha, z)/dalpha / q(z | alpha), for CPU float64 / float32.
 *
 * The same expansions as vitools/implicit/gamma.py and gamma_asymptotic.py (their docstrings derive them):
 *   - alpha >= amin and eta^2 < 1: Temme's uniform expansion differentiated in the shape, truncated per band
 *     (a row by the shape's floor, a level by eta^2); the Taylor coefficients, the truncations and the band
 *     grid come from Python at call time (gamma_native.tables), so there is one table, not two;
 *   - else z < alpha + 1: the power series with its alpha-derivative, as many terms as its tolerance needs;
 *   - else: the continued fraction from the bottom up with its derivative, a fixed number of convergents
 *     per bucket of z (gamma.CF_BUCKETS / CF_TERMS_32).
 * Samples go in blocks; within a block, one kind of work at a time over the samples it concerns (sorted by
 * region with one counting sort), so that loops vectorize and calls to libm overlap. Computed in double for
 * float and double input. z <= 0 gives 0. Plain C11; no allocation (a block's work lives on the stack).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define KMAX 16                /* c_k kept: k < 16 */
#define LANES 8                /* the series and the fraction run this many samples at a time */
#define BLOCK 1024             /* samples per block (its work, about 80 KB, on the stack) */
#define MAX_CF 16              /* fraction buckets at most */
#define MAX_ROWS 16            /* Temme's rows and levels at most, and the Stirling terms of log Gamma* */
#define MAX_LEVELS 8
#define N_LOG_GSTAR 8
#define CF_EDGES 8             /* fraction bucket edges tested per sample (the rest: +inf) */
#define Z_KEYS 12              /* series samples grouped by z's binary exponent, -7..4 (lanes of like length) */
#define MAX_TERMS 256          /* series terms at most (z < a + 1 < 11 converges in about 60) */
enum { K_ZERO, K_TINY, K_HUGE, K_TEMME, K_FRACTION };  /* sample keys; then MAX_CF fraction buckets, Z_KEYS series keys */
#define N_KEYS (K_FRACTION + MAX_CF + Z_KEYS)
#define STREAMS 4              /* the counting sort's interleaved streams */

typedef struct {
    const double *coef;        /* per band, from offset[band]: its Taylor coefficients [pairs][2][width] */
    const int32_t *offset;     /* per band: where its table starts in coef */
    const int32_t *pairs;      /* per band: pairs of Taylor terms (even, odd) kept */
    const int32_t *width;      /* per band: c_k kept, k < width (8 or KMAX) */
    const double *floors;      /* shape floor of each row, falling [n_rows] */
    const double *eta2;        /* eta^2 bound of each level, rising [n_levels] (last: 1) */
    const double *log_gstar;   /* log Gamma*(a) = sum_j log_gstar[j] a^-(2j+1) */
    const double *cf_edges;    /* upper z edge of each fraction bucket, rising [n_cf] (last: inf) */
    const int32_t *cf_terms;   /* convergents per bucket [n_cf] */
    int32_t n_rows, n_levels, n_log_gstar, n_cf, max_series;
    double amin;               /* smallest shape for Temme's expansion */
    double tol;                /* relative tolerance of the series */
} gamma_tables;

/* sum_k B_2k / (2k) y^-2k, k = 1..8: the asymptotic series of digamma (y >= 10: next term < 3e-18) */
static const double PSI_ASYM[8] = {1.0 / 12, -1.0 / 120, 1.0 / 252, -1.0 / 240, 1.0 / 132, -691.0 / 32760,
                                   1.0 / 12, -3617.0 / 8160};

/* log(y) - psi(y) for y >= 10 (iy = 1/y): 1/2y + sum_k B_2k/(2k) y^-2k */
static inline double psi_tail(double iy) {
    double iy2 = iy * iy, p = PSI_ASYM[7];
    for (int j = 6; j >= 0; j--) p = fma(p, iy2, PSI_ASYM[j]);
    return fma(p, iy2, 0.5 * iy);
}

/* log(z / y), iy = 1/y: one log of the ratio where z is normal and far from underflow */
static inline double log_over(double z, double y, double iy) {
    return z > 0x1p-1000 ? log(z * iy) : log(z) - log(y);
}

/* log(z) - psi(y), y > 0: the recurrence psi(y) = psi(y + m) - sum_i 1/(y + i) up to y + m >= 10 (the sum
 * carried as one fraction, all terms positive), then the asymptotic series. */
static double log_minus_digamma(double z, double y) {
    double acc = 0.0;
    if (y < 1.0) {
        acc = 1.0 / y;
        y += 1.0;
    }
    if (y < 10.0) {
        double num = 0.0, den = 1.0;
        while (y < 10.0) {
            num = num * y + den;
            den *= y;
            y += 1.0;
        }
        acc += num / den;
    }
    double iy = 1.0 / y;
    return log_over(z, y, iy) + psi_tail(iy) + acc;
}

/* the power series, z < a + 1, for LANES samples at once (the lane loops vectorize):
 * dz/da = -(z/a) [S (log z - psi(a + 1)) + S'], S = sum_n t_n, t_n = t_{n-1} w_n, w_n = z/(a + n).
 * A forward pass finds how many terms: until, in every lane, the last term of S' (-t_n H_n, H_n =
 * sum_{i<=n} 1/(a + i)) is below tol times its sum (those terms keep one sign and fall faster than
 * geometrically; a lane that got there earlier only gains terms below its tolerance); it keeps each 1/(a + n).
 * A second pass sums from the last term up by Horner's rule, as gamma.py does: s <- 1 + w_n s,
 * s' <- w_n s' - w_n s/(a + n), the smallest terms first. Digamma: psi(a + 1) = psi(y) - sum_{i<=m} 1/(a + i)
 * with y = a + m + 1 the first at or above 10 (the forward pass goes on until every lane has its m), then the
 * asymptotic series. Forward terms carry 2^-900 (no slow subnormals; far below any tolerance). Not static:
 * kept out of line, where GCC vectorizes the lane loops (inlined into grad_block it does not). */
void gamma_series_lanes(const double *zin, const double *ain, double *out, const gamma_tables *t) {
    double z[LANES], a[LANES], term[LANES], dsf[LANES], h[LANES], hp[LANES], m[LANES], r[MAX_TERMS][LANES];
    const double tol = t->tol;
    const int max_terms = t->max_series < MAX_TERMS ? t->max_series : MAX_TERMS;
    int used = max_terms;
    for (int l = 0; l < LANES; l++) {
        z[l] = zin[l];
        a[l] = ain[l];
        term[l] = 1.0;
        dsf[l] = 0.0;
        h[l] = 0.0;
        hp[l] = 0.0;
        m[l] = 0.0;
    }
    for (int n = 1; n <= max_terms; n++) {
        double more[LANES];
#pragma GCC unroll 1
        for (int l = 0; l < LANES; l++) {
            double b = a[l] + n, rn = 1.0 / b, tn = fma(term[l], z[l] * rn, 0x1p-900);
            double low = b < 10.0 ? 1.0 : 0.0;        /* digamma's recurrence still below 10 */
            r[n - 1][l] = rn;
            h[l] += rn;
            term[l] = tn;
            dsf[l] = fma(-tn, h[l], dsf[l]);
            hp[l] += low * rn;
            m[l] += low;
            more[l] = (tn * h[l] > -tol * dsf[l] ? 1.0 : 0.0) + (b + 1.0 < 10.0 ? 1.0 : 0.0);
        }
        for (int w = LANES / 2; w >= 1; w /= 2)        /* any lane still going: a pairwise sum */
            for (int l = 0; l < w; l++) more[l] += more[l + w];
        if (more[0] == 0.0) {
            used = n;
            break;
        }
    }
    double s[LANES], ds[LANES], iy[LANES], lg[LANES];
    for (int l = 0; l < LANES; l++) {
        s[l] = 1.0;
        ds[l] = 0.0;
    }
    for (int n = used; n >= 1; n--) {
#pragma GCC unroll 1
        for (int l = 0; l < LANES; l++) {
            double rn = r[n - 1][l], w = z[l] * rn;
            ds[l] = fma(ds[l], w, -(w * s[l]) * rn);
            s[l] = fma(w, s[l], 1.0);
        }
    }
    for (int l = 0; l < LANES; l++) iy[l] = 1.0 / (a[l] + m[l] + 1.0);
    for (int l = 0; l < LANES; l++) lg[l] = log_over(z[l], a[l] + m[l] + 1.0, iy[l]);   /* (libm: lane by lane) */
    for (int l = 0; l < LANES; l++)
        out[l] = -(z[l] / a[l]) * fma(s[l], lg[l] + psi_tail(iy[l]) + hp[l], ds[l]);
}

/* the continued fraction, z >= a + 1, for LANES samples at once: its `terms`-th convergent from the bottom
 * up, f_n = b_n + a_{n+1}/f_{n+1} (b_n = z + 2n - 1 - a, a_{n+1} = n(a - n)), carried without division as
 * f_n = p_n/q_n: p_n = b_n p_{n+1} + a_{n+1} q_{n+1}, q_n = p_{n+1}, with their a-derivatives (rescaled by
 * 2^-500, exactly, when large); C = 1/f_1, C' = -f_1'/f_1^2 and
 * dz/da = z [C (log z - psi(a)) + C'] = (z/p) [q L + (p q' - p' q)/p]. Out of line like the series. */
void gamma_fraction_lanes(const double *zin, const double *ain, int terms, double *out) {
    double z[LANES], a[LANES], xa[LANES], p[LANES], q[LANES], dp[LANES], dq[LANES];
    for (int l = 0; l < LANES; l++) {
        z[l] = zin[l];
        a[l] = ain[l];
        xa[l] = z[l] - a[l];
        p[l] = xa[l] + (2.0 * terms - 1.0);
        q[l] = 1.0;
        dp[l] = -1.0;
        dq[l] = 0.0;
    }
    for (int n = terms - 1; n >= 1; n--) {
#pragma GCC unroll 1
        for (int l = 0; l < LANES; l++) {
            double b = xa[l] + (2.0 * n - 1.0), an = n * (a[l] - n);
            double p1 = fma(b, p[l], an * q[l]), dp1 = fma(b, dp[l], fma(an, dq[l], n * q[l] - p[l]));
            double scale = fabs(p1) > 0x1p500 ? 0x1p-500 : 1.0;
            q[l] = p[l] * scale;
            dq[l] = dp[l] * scale;
            p[l] = p1 * scale;
            dp[l] = dp1 * scale;
        }
    }
    for (int l = 0; l < LANES; l++) {
        double ip = 1.0 / p[l];
        out[l] = z[l] * ip * (q[l] * log_minus_digamma(z[l], a[l]) + fma(p[l], dq[l], -dp[l] * q[l]) * ip);
    }
}

/* the same convergent one sample at a time with a division a step (f_n itself, h_n = f_n' + 1), for z or a
 * beyond 2^200, where the products of the division-free form would overflow:
 * dz/da = (z/f_1) [log z - psi(a) + (1 - h_1)/f_1] */
static double fraction_one(double z, double a, int terms) {
    double xa = z - a, f = xa + (2.0 * terms - 1.0), h = 0.0;
    for (int n = terms - 1; n >= 1; n--) {
        double inv = 1.0 / f, r = n * (a - n) * inv;
        h = (n + r - r * h) * inv;
        f = xa + (2.0 * n - 1.0) + r;
    }
    double inv = 1.0 / f;
    return z * inv * (log_minus_digamma(z, a) + (1.0 - h) * inv);
}

/* The sums of Temme's expansion in one band: S = sum_k c_k(e) a^-k and T = sum_k k c_k(e) a^-k, k < w, with
 * c_k(e) = E_k(e^2) + e O_k(e^2) (its even and odd Taylor coefficients, two short Horner chains) for all k at
 * once: the band's table is [pairs][2][w], the highest pair first, zero beyond each c_k's truncation (so the
 * result is the truncated expansion). w is a constant after inlining: the k-loops vectorize. */
static inline void temme_sums(const double *c, int pairs, const int w, double e, double ia, double *s, double *tk) {
    double pe[KMAX], po[KMAX], pw[KMAX], u[KMAX], v[KMAX], e2 = e * e;
    for (int k = 0; k < w; k++) {
        pe[k] = c[k];
        po[k] = c[w + k];
    }
    for (int j = 1; j < pairs; j++) {
        const double *cj = c + 2 * j * w;
#pragma GCC unroll 1
        for (int k = 0; k < w; k++) {
            pe[k] = fma(pe[k], e2, cj[k]);
            po[k] = fma(po[k], e2, cj[w + k]);
        }
    }
    pw[0] = 1.0;                                   /* pw[k] = a^-k */
    pw[1] = ia;
    for (int k = 0; k < 2; k++) pw[k + 2] = pw[k] * (ia * ia);
    for (int k = 0; k < 4; k++) pw[k + 4] = pw[k] * (pw[2] * pw[2]);
    if (w > 8)
        for (int k = 0; k < 8; k++) pw[k + 8] = pw[k] * (pw[4] * pw[4]);
    for (int k = 0; k < w; k++) {
        u[k] = fma(po[k], e, pe[k]) * pw[k];
        v[k] = k * u[k];
    }
    for (int h = w / 2; h >= 1; h /= 2)            /* pairwise sums */
        for (int k = 0; k < h; k++) {
            u[k] += u[k + h];
            v[k] += v[k + h];
        }
    *s = u[0];
    *tk = v[0];
}

/* the two widths out of line (where the k-loops vectorize) */
void gamma_temme_sums8(const double *c, int pairs, double e, double ia, double *s, double *tk) {
    temme_sums(c, pairs, 8, e, ia, s, tk);
}

void gamma_temme_sums16(const double *c, int pairs, double e, double ia, double *s, double *tk) {
    temme_sums(c, pairs, KMAX, e, ia, s, tk);
}

/* Temme's expansion in band `band` at eta e: the bracket -e/2 - (e^2/2 + 1/2a) S - T/a of
 * dz/da = lambda {1 + Gamma*(a) [bracket]} */
static double temme_bracket(double ia, double e, int band, const gamma_tables *t) {
    const double *c = t->coef + t->offset[band];
    double s, tk;
    if (t->width[band] <= 8)
        gamma_temme_sums8(c, t->pairs[band], e, ia, &s, &tk);
    else
        gamma_temme_sums16(c, t->pairs[band], e, ia, &s, &tk);
    return -0.5 * (e * e + ia) * s - 0.5 * e - tk * ia;
}

/* One block of samples, in phases, each one kind of work over the block (vectorized where it can be, else
 * independent calls to libm, which overlap): the region of each sample (eta^2 = 2 (mu - log1p mu) for shapes
 * that may take Temme's expansion); Temme's samples; the series and the fraction LANES at a time, grouped
 * by z's binary exponent and by bucket (a group of the fraction takes the most convergents of its members:
 * more is as right). */
static void grad_block(int m, const double *z, const double *a, double *out, const gamma_tables *t) {
    double ia[BLOCK], mu[BLOCK], q[BLOCK], e[BLOCK], w[BLOCK];
    int list[BLOCK], key[BLOCK], band[BLOCK], nl = 0;
    const int n_cf = t->n_cf, cf0 = K_FRACTION, s0 = K_FRACTION + MAX_CF;
    const double amin = t->amin, top = t->eta2[t->n_levels - 1];
    for (int i = 0; i < m; i++) {
        ia[i] = 1.0 / a[i];
        mu[i] = (z[i] - a[i]) * ia[i];
        q[i] = INFINITY;
    }
    for (int i = 0; i < m; i++) {                      /* (branch-free: a compacted index list) */
        list[nl] = i;
        nl += (a[i] >= amin) & (z[i] > 0.0);
    }
    for (int j = 0; j < nl; j++) q[list[j]] = 2.0 * (mu[list[j]] - log1p(mu[list[j]]));   /* eta^2 */
    double edges[MAX_CF];
    for (int c = 0; c < MAX_CF; c++) edges[c] = c < n_cf - 1 ? t->cf_edges[c] : INFINITY;
    for (int i = 0; i < m; i++) {                      /* each sample's key, then one counting sort */
        double zi = z[i];
        int64_t bits;
        memcpy(&bits, &zi, sizeof bits);
        int zkey = (int)(bits >> 52) - 1023 + Z_KEYS - 5, j = 0;   /* (z >= 0: no sign bit) */
        zkey = zkey < 0 ? 0 : zkey >= Z_KEYS ? Z_KEYS - 1 : zkey;
        for (int c = 0; c < CF_EDGES; c++) j += zi >= edges[c];
        int pos = zi > 0.0, tm = pos & (q[i] < top), low = pos & !tm & (zi < a[i] + 1.0);
        int huge = (zi > 0x1p200) | (a[i] > 0x1p200);
        key[i] = !pos ? K_ZERO : tm ? K_TEMME : !low ? (huge ? K_HUGE : cf0 + j) : zi >= 0x1p-60 ? s0 + zkey : K_TINY;
    }
    /* four interleaved streams of samples, each with its own counts: no chain through one counter */
    int at[STREAMS][N_KEYS] = {{0}}, first[N_KEYS + 1], next = 0;
    for (int i = 0; i < m; i++) at[i % STREAMS][key[i]]++;
    for (int k = 0; k < N_KEYS; k++) {
        first[k] = next;
        for (int r = 0; r < STREAMS; r++) {
            int c = at[r][k];
            at[r][k] = next;
            next += c;
        }
    }
    first[N_KEYS] = next;
    for (int i = 0; i < m; i++) list[at[i % STREAMS][key[i]]++] = i;   /* the samples by key: k's from first[k] */
    for (int j = first[K_ZERO]; j < first[K_ZERO + 1]; j++) out[list[j]] = 0.0;
    for (int j = first[K_TINY]; j < first[K_TINY + 1]; j++) {   /* the series' first term below tol */
        int i = list[j];
        out[i] = -(z[i] * ia[i]) * log_minus_digamma(z[i], a[i] + 1.0);   /* S = 1, S' = 0 */
    }
    for (int j = first[K_HUGE]; j < first[K_HUGE + 1]; j++) {
        int i = list[j], c = 0;
        while (c < n_cf - 1 && z[i] >= t->cf_edges[c]) c++;
        out[i] = fraction_one(z[i], a[i], t->cf_terms[c]);
    }
    /* Temme's expansion */
    const int *temme = list + first[K_TEMME];
    const int nt = first[K_TEMME + 1] - first[K_TEMME];
    double floors[MAX_ROWS], eta2[MAX_LEVELS], lgs[N_LOG_GSTAR];   /* fixed lengths: the loops unroll */
    for (int r = 0; r < MAX_ROWS; r++) floors[r] = r < t->n_rows - 1 ? t->floors[r] : -INFINITY;
    for (int l = 0; l < MAX_LEVELS; l++) eta2[l] = l < t->n_levels - 1 ? t->eta2[l] : INFINITY;
    for (int k = 0; k < N_LOG_GSTAR; k++) lgs[k] = t->log_gstar[k];
    for (int j = 0; j < nt; j++) {
        int i = temme[j], row = 0, level = 0;
        double qi = q[i] > 0.0 ? q[i] : 0.0;
        for (int r = 0; r < MAX_ROWS; r++) row += a[i] < floors[r];
        for (int l = 0; l < MAX_LEVELS; l++) level += qi >= eta2[l];
        band[j] = row * t->n_levels + level;
        e[j] = copysign(sqrt(qi), mu[i]);
        w[j] = ia[i];
    }
    for (int j = 0; j < nt; j++) {                     /* log Gamma*(a), Horner in 1/a^2, into q */
        double x = w[j], x2 = x * x, lg = lgs[N_LOG_GSTAR - 1];
        for (int k = N_LOG_GSTAR - 2; k >= 0; k--) lg = fma(lg, x2, lgs[k]);
        q[j] = lg * x;
    }
    for (int j = 0; j < nt; j++) w[j] = temme_bracket(w[j], e[j], band[j], t);
    for (int j = 0; j < nt; j++) e[j] = exp(q[j]);
    for (int j = 0; j < nt; j++) {
        int i = temme[j];
        out[i] = fma(w[j], e[j], 1.0) * z[i] * ia[i];
    }
    /* the series (by z's exponent) and the fraction (by bucket), LANES at a time */
    const int *series = list + first[s0], *frac = list + first[cf0];
    const int ns = first[s0 + Z_KEYS] - first[s0], nf = first[cf0 + MAX_CF] - first[cf0];
    for (int j = 0; j < ns; j += LANES) {
        double zl[LANES], al[LANES], rl[LANES];
        for (int l = 0; l < LANES; l++) {
            int i = series[j + l < ns ? j + l : ns - 1];   /* a short last group repeats its last sample */
            zl[l] = z[i];
            al[l] = a[i];
        }
        gamma_series_lanes(zl, al, rl, t);
        for (int l = 0; l < LANES && j + l < ns; l++) out[series[j + l]] = rl[l];
    }
    for (int j = 0; j < nf; j += LANES) {
        double zl[LANES], al[LANES], rl[LANES];
        int terms = 0;
        for (int l = 0; l < LANES; l++) {
            int i = frac[j + l < nf ? j + l : nf - 1];
            int c = t->cf_terms[key[i] - cf0];
            zl[l] = z[i];
            al[l] = a[i];
            terms = c > terms ? c : terms;
        }
        gamma_fraction_lanes(zl, al, terms, rl);
        for (int l = 0; l < LANES && j + l < nf; l++) out[frac[j + l]] = rl[l];
    }
}

void gamma_grad_f64(int64_t n, const double *z, const double *a, int64_t a_stride, double *out,
                    const gamma_tables *t) {
    double ab[BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        int m = n - i0 < BLOCK ? (int)(n - i0) : BLOCK;
        for (int i = 0; i < m; i++) ab[i] = a[(i0 + i) * a_stride];
        grad_block(m, z + i0, ab, out + i0, t);
    }
}

void gamma_grad_f32(int64_t n, const float *z, const float *a, int64_t a_stride, float *out,
                    const gamma_tables *t) {
    double zb[BLOCK], ab[BLOCK], ob[BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        int m = n - i0 < BLOCK ? (int)(n - i0) : BLOCK;
        for (int i = 0; i < m; i++) {
            zb[i] = z[i0 + i];
            ab[i] = a[(i0 + i) * a_stride];
        }
        grad_block(m, zb, ab, ob, t);
        for (int i = 0; i < m; i++) out[i0 + i] = (float)ob[i];
    }
}
