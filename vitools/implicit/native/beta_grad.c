/* Implicit reparameterization gradients of Beta(a, b) samples through the Beta CDF.

   dx/da = -(dI_x(a, b)/da) / q(x | a, b), likewise for b, where I_x is the regularized incomplete
   beta function (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498). The parameter derivatives of
   I_x are carried forward through the three-term recurrences of the continued fraction's
   convergents (forward mode, as Boik & Robison-Cox 1998, "Derivatives of the incomplete beta
   function", J. Statistical Software 3(1)), or through the power series where that is better
   (x <= 1/4 and q x <= 2; written for x or for 1 - x). Elsewhere, below the switch
   x <= (a+1)/(a+b+2) the continued fraction (Numerical Recipes' betacf, in equivalent form) is
   taken for I_x(a, b); above it I_x(a, b) = 1 - I_{1-x}(b, a).

   With G = x^p (1-x)^q / (p B(p, q)), I_x(p, q) = G h where h = 1/V and
       V = 1 + a_1/(b_1 + a_2/(b_2 + ...)),   b_k = p + k,   a_1 = -(p+q) x,
       a_{2m} = m (q - m) x,   a_{2m+1} = -(p + m)(p + q + m) x
   (the betacf fraction with the k-th denominator multiplied by p + k: no divisions). The density
   is q(x) = p G / (x (1 - x)), so G cancels (no overflow, no lgamma):
       dx/dp = -x (1-x) / p * h * [log x + psi(p+q) - psi(p+1) + d log h/dp]
       dx/dq = -x (1-x) / p * h * [log(1-x) + psi(p+q) - psi(q) + d log h/dq]
   with h = B_n/A_n from A_k = b_k A_{k-1} + a_k A_{k-2} (B likewise) and their p- and
   q-derivatives carried along. The digamma differences are formed without cancelling large terms
   (log_psi_diff). The fraction stops when h and both brackets change by less than TOL relative in
   one pair of steps; it runs for eight samples at once in lock step (a lane refilled as soon as its
   sample converges), which lets the compiler use vector registers. Plain C11, double precision
   throughout; float32 callers pass float64. */
#include <math.h>
#include <stdint.h>

#define TOL 1e-15
#define MAX_PAIRS 100000
#define MAX_TERMS 1000           /* x <= 1/4: about 30 terms */
#define SERIES_X 0.25
#define SERIES_QX 2.0

/* psi(z) - log(z) + 1/(2z) + 1/(12 z^2) for z >= 10: the rest of the asymptotic series
   -sum_k B_2k / (2k z^2k) from k = 2, six terms (the first dropped one is 4e-17). */
static double psi_rest(double z) {
    double f = 1.0 / (z * z);
    return f * f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132 - f * (691.0 / 32760 - f / 12.0)))));
}

/* log(z) + psi(v + d) - psi(v) for v > 0, v + d > 0, with d given exactly: both digammas are shifted up together by
   psi(t) = psi(t + 1) - 1/t (each step adds d / (v (v + d)), no cancellation), then the
   asymptotic series is differenced term by term and its logarithm taken with z. */
static double log_psi_diff(double z, double v, double d) {
    double s = 0.0;
    while (v < 10.0 || v + d < 10.0) { s += d / (v * (v + d)); v += 1.0; }
    double u = v + d, lg;
    if (fabs(d) <= 0.5 * v) {
        lg = log(z) + log1p(d / v);
    } else {
        double t = z * (u / v);
        lg = t > 1e-300 ? log(t) : log(z) + log(u / v);
    }
    /* the two leading terms of the series as exact differences, then the rest */
    double lead = d / (2.0 * u * v) + d * (u + v) / (12.0 * u * u * v * v);
    double rest = psi_rest(u) - psi_rest(v);
    return s + lg + lead + rest;
}

/* The continued fraction for LANES samples at once, one pair of steps (k = 2m, 2m + 1) per call
   in every lane: the same arithmetic in each lane, so the compiler keeps the lanes in vector
   registers. Per lane: the convergents k - 1 (suffix 1) and k - 2 (suffix 2) of A and B and their
   p- and q-derivatives, rescaled after each pair so that A_k = 1 and dA_k = 0 (multiplying every
   convergent by one factor phi(p, q) leaves h and d log h unchanged, and keeps the derivatives as
   small as d log h itself instead of growing with sum 1/(p + k)); h and the two brackets; and
   whether they changed by less than TOL relative in this pair. */
#define LANES 8
typedef struct {
    double x[LANES], p[LANES], q[LANES], base_p[LANES], base_q[LANES], m[LANES], done[LANES];
    double A1[LANES], A2[LANES], B1[LANES], B2[LANES], A1p[LANES], A2p[LANES], B1p[LANES], B2p[LANES];
    double A1q[LANES], A2q[LANES], B1q[LANES], B2q[LANES], h[LANES], sp[LANES], sq[LANES];
} Lanes;

/* Lane l starts I_x(p, q), w = 1 - x: after k = 1, A_0 = B_0 = 1, A_{-1} = 1, B_{-1} = 0, so
   A_1 = (p + 1) - (p + q) x and B_1 = p + 1. */
static void lane_start(Lanes *L, int l, double x, double w, double p, double q) {
    L->x[l] = x; L->p[l] = p; L->q[l] = q; L->m[l] = 1.0; L->done[l] = 0.0;
    L->base_p[l] = log_psi_diff(x, p + 1.0, q - 1.0);
    L->base_q[l] = log_psi_diff(w, q, p);
    L->A2[l] = 1.0; L->A1[l] = p + 1.0 - (p + q) * x; L->B2[l] = 1.0; L->B1[l] = p + 1.0;
    L->A2p[l] = 0.0; L->A1p[l] = 1.0 - x; L->B2p[l] = 0.0; L->B1p[l] = 1.0;
    L->A2q[l] = 0.0; L->A1q[l] = -x; L->B2q[l] = 0.0; L->B1q[l] = 0.0;
    L->h[l] = 0.0; L->sp[l] = 0.0; L->sq[l] = 0.0;
}

static void lanes_pair(Lanes *restrict L) {
    for (int l = 0; l < LANES; l++) {
        const double x = L->x[l], p = L->p[l], q = L->q[l], m = L->m[l], s = p + q;
        double A1 = L->A1[l], A2 = L->A2[l], B1 = L->B1[l], B2 = L->B2[l];
        double A1p = L->A1p[l], A2p = L->A2p[l], B1p = L->B1p[l], B2p = L->B2p[l];
        double A1q = L->A1q[l], A2q = L->A2q[l], B1q = L->B1q[l], B2q = L->B2q[l];
        /* k = 2m: a = m (q - m) x, b = p + 2m */
        double a = m * (q - m) * x, aq = m * x, b = p + 2.0 * m;
        double A = b * A1 + a * A2, B = b * B1 + a * B2;
        double Ap = A1 + b * A1p + a * A2p, Bp = B1 + b * B1p + a * B2p;
        double Aq = b * A1q + aq * A2 + a * A2q, Bq = b * B1q + aq * B2 + a * B2q;
        A2 = A1; B2 = B1; A2p = A1p; B2p = B1p; A2q = A1q; B2q = B1q;
        A1 = A; B1 = B; A1p = Ap; B1p = Bp; A1q = Aq; B1q = Bq;
        /* k = 2m + 1: a = -(p + m)(p + q + m) x, b = p + 2m + 1 */
        a = -(p + m) * (s + m) * x;
        double ap = -x * ((s + m) + (p + m));
        aq = -x * (p + m);
        b += 1.0;
        A = b * A1 + a * A2; B = b * B1 + a * B2;
        Ap = A1 + b * A1p + ap * A2 + a * A2p; Bp = B1 + b * B1p + ap * B2 + a * B2p;
        Aq = b * A1q + aq * A2 + a * A2q; Bq = b * B1q + aq * B2 + a * B2q;
        A2 = A1; B2 = B1; A2p = A1p; B2p = B1p; A2q = A1q; B2q = B1q;
        /* rescale: A_k = 1, dA_k = 0 */
        const double r = 1.0 / A;
        A2 *= r; B2 *= r; B = B * r;
        const double cp = Ap * r, cq = Aq * r;
        A2p = A2p * r - cp * A2; B2p = B2p * r - cp * B2; Bp = Bp * r - cp * B;
        A2q = A2q * r - cq * A2; B2q = B2q * r - cq * B2; Bq = Bq * r - cq * B;
        const double rb = 1.0 / B;
        const double h = B, sp = L->base_p[l] + Bp * rb, sq = L->base_q[l] + Bq * rb;  /* h = B_k / A_k */
        L->done[l] = (fabs(h - L->h[l]) <= TOL * fabs(h) && fabs(sp - L->sp[l]) <= TOL * fabs(sp)
                      && fabs(sq - L->sq[l]) <= TOL * fabs(sq)) ? 1.0 : 0.0;
        L->h[l] = h; L->sp[l] = sp; L->sq[l] = sq; L->m[l] = m + 1.0;
        L->A1[l] = 1.0; L->A2[l] = A2; L->B1[l] = B; L->B2[l] = B2;
        L->A1p[l] = 0.0; L->A2p[l] = A2p; L->B1p[l] = Bp; L->B2p[l] = B2p;
        L->A1q[l] = 0.0; L->A2q[l] = A2q; L->B1q[l] = Bq; L->B2q[l] = B2q;
    }
}

/* The same two brackets times h from the power series (small x, or small p where the fraction's
   q-derivative cancels): I_x(p, q) = x^p / (p B(p, q)) * S with
       S = 1 + p sum_{n>=1} t_n / (p + n),   t_n = t_{n-1} (n - q) x / n,   t_0 = 1,
   so h = (1-x)^{-q} S, and the q-bracket is psi(p+q) - psi(q) + S_q / S (no log(1-x)). Past the
   largest term (n > q x) the terms fall geometrically; stop when all three sums change by less
   than TOL relative. Used for x <= SERIES_X and q x <= SERIES_QX (the alternating terms then
   cancel by at most exp(2 q x)). */
static void series(double x, double p, double q, double *gp, double *gq) {
    double t = 1.0, tq = 0.0, sum = 0.0, sum_p = 0.0, sum_q = 0.0;
    const double qx = q * x;
    for (int n = 1; n <= MAX_TERMS; n++) {
        double r = 1.0 / n, c = 1.0 / (p + n);
        tq = (tq * (n - q) - t) * x * r;
        t = t * (n - q) * x * r;
        double dv = t * c, dp = n * dv * c, dq = tq * c;
        sum += dv; sum_p += dp; sum_q += dq;
        if (n > qx && fabs(dv) <= TOL * fabs(sum) && fabs(dp) <= TOL * fabs(sum_p) && fabs(dq) <= TOL * fabs(sum_q))
            break;
    }
    const double S = 1.0 + p * sum, Sp = sum_p, Sq = p * sum_q;      /* S_p = sum n t_n / (p + n)^2 */
    const double base_p = log_psi_diff(x, p + 1.0, q - 1.0), base_q = log_psi_diff(1.0, q, p);
    const double scale = exp(-q * log1p(-x));
    *gp = scale * (S * base_p + Sp);
    *gq = scale * (S * base_q + Sq);
}

/* Which expansion serves sample (x, a, b): whether to work with 1 - x ~ Beta(b, a) instead, and
   whether by the power series (1) or the continued fraction (0). */
static void choose(double x, double a, double b, int *flip, int *use_series) {
    double y = 1.0 - x;
    *use_series = 1;
    if (x <= SERIES_X && b * x <= SERIES_QX)
        *flip = 0;
    else if (y <= SERIES_X && a * y <= SERIES_QX)
        *flip = 1;
    else {
        *flip = x > (a + 1.0) / (a + b + 2.0);
        *use_series = 0;
    }
}

/* dx/da, dx/db from h times the brackets (gp, gq) of I_x(a, b), or of I_{1-x}(b, a) where flipped
   (1 - x ~ Beta(b, a), dx = -d(1 - x)). */
static void finish(double x, double a, double b, int flip, double gp, double gq, double *da, double *db) {
    double y = 1.0 - x;
    if (!flip) {
        double f = -x * y / a;
        *da = f * gp;
        *db = f * gq;
    } else {
        double f = y * x / b;
        *db = f * gp;
        *da = f * gq;
    }
}

/* dx/da, dx/db for n samples; 0 where x is not inside (0, 1) or a, b not positive. Samples for the
   power series are done as they come; those for the continued fraction queue into the lanes, a
   lane taking the next one as soon as its own has converged. */
void vitools_beta_grad(const double *x, const double *a, const double *b, double *da, double *db, int64_t n) {
    Lanes L;
    int64_t slot[LANES], next = 0;
    int flips[LANES], active = 0;
    for (int l = 0; l < LANES; l++) {
        lane_start(&L, l, 0.5, 0.5, 1.0, 1.0);   /* idle lanes run a harmless fraction */
        slot[l] = -1;
    }
    for (;;) {
        for (int l = 0; l < LANES; l++) {
            if (slot[l] >= 0 && !(L.done[l] != 0.0 || L.m[l] > MAX_PAIRS))
                continue;
            if (slot[l] >= 0) {                   /* lane l has converged: write it out */
                int64_t i = slot[l];
                finish(x[i], a[i], b[i], flips[l], L.h[l] * L.sp[l], L.h[l] * L.sq[l], da + i, db + i);
                slot[l] = -1;
                active--;
                lane_start(&L, l, 0.5, 0.5, 1.0, 1.0);
            }
            for (; next < n && slot[l] < 0; next++) {
                double xi = x[next], ai = a[next], bi = b[next], gp, gq;
                int flip, use_series;
                if (!(xi > 0.0 && xi < 1.0) || !(ai > 0.0) || !(bi > 0.0)) {
                    da[next] = 0.0; db[next] = 0.0;
                    continue;
                }
                choose(xi, ai, bi, &flip, &use_series);
                if (use_series) {
                    if (!flip) series(xi, ai, bi, &gp, &gq); else series(1.0 - xi, bi, ai, &gp, &gq);
                    finish(xi, ai, bi, flip, gp, gq, da + next, db + next);
                    continue;
                }
                if (!flip) lane_start(&L, l, xi, 1.0 - xi, ai, bi); else lane_start(&L, l, 1.0 - xi, xi, bi, ai);
                flips[l] = flip;
                slot[l] = next;
                active++;
            }
        }
        if (active == 0)
            break;
        lanes_pair(&L);
    }
}
