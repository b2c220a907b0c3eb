r"""Temme's uniform asymptotic expansion of the incomplete gamma function, differentiated in
the shape: $dz/d\alpha$ for $z \sim \mathrm{Gamma}(\alpha, 1)$ at large $\alpha$ in a fixed
number of operations.

Used by :mod:`vitools.implicit.gamma` (Figurnov, Mohamed & Mnih 2018, arXiv:1805.08498) for
$\alpha \ge 10$, where the series / continued fraction needs $O(\sqrt\alpha)$ terms.

**Expansion** (Temme 1979, SIAM J. Math. Anal. 10:757; Temme 1996, *Special Functions*
§11.2.4; DiDonato & Morris 1986, ACM TOMS 12:377; DLMF 8.12.8-8.12.12). With
$\lambda = x/a$ and $\eta = \mathrm{sign}(\lambda-1)\sqrt{2(\lambda - 1 - \log\lambda)}$,

$$Q(a, x) = 1 - P(a, x) = \tfrac12\mathrm{erfc}\big(\eta\sqrt{a/2}\big)
  + \frac{e^{-a\eta^2/2}}{\sqrt{2\pi a}}\, S(a, \eta), \qquad
  S(a, \eta) \sim \sum_{k\ge0} c_k(\eta)\, a^{-k},$$

$c_0 = 1/(\lambda-1) - 1/\eta$, $c_k = \eta^{-1} c_{k-1}'(\eta) + (-1)^k g_k/(\lambda-1)$ with
$g_k$ the Stirling coefficients ($\Gamma^*(a) = \Gamma(a)e^a a^{-a}\sqrt{a/2\pi} \sim \sum g_k a^{-k}$).
The $c_k$ are analytic for $|\eta| < 2\sqrt\pi$; :func:`temme_coefficients` derives their
Taylor coefficients exactly (rational power series: reversion of
$\eta^2/2 = \mu - \log(1+\mu)$, $\mu = \lambda - 1$, then the recursion), and ``_C`` holds
them rounded to float64 (``tests/test_implicit_gamma.py`` re-derives and compares).

**Derivative in the shape.** Write $Q = F(a, \eta(a, x))$. Since $\eta\,d\eta = (1 - 1/\lambda)\,d\lambda$
and $\partial_a\lambda = -\lambda/a$, the density is $q = -\partial_x Q = -F_\eta (\lambda-1)/(a\lambda\eta)$
and $\partial_a Q|_x = F_a + F_\eta\,\partial_a\eta = F_a + \lambda q$. The implicit gradient is
therefore $dz/da = \partial_a Q|_x / q = \lambda + F_a/q$, where $F_a$ is the derivative at fixed $\eta$:

$$F_a = \frac{e^{-a\eta^2/2}}{\sqrt{2\pi a}}\Big[-\frac\eta2 - \Big(\frac{\eta^2}{2} + \frac1{2a}\Big)S
  + \partial_a S\Big], \qquad \partial_a S = -\sum_k k\,c_k(\eta)\,a^{-k-1}.$$

Because $e^{-a\eta^2/2} = e^{a-x}(x/a)^a$, the ratio
$e^{-a\eta^2/2}/(\sqrt{2\pi a}\,q) = \lambda\,\Gamma^*(a)$ and every exponential cancels:

$$\frac{dz}{da} = \lambda\Big\{1 + \Gamma^*(a)\Big[-\frac\eta2 - \Big(\frac{\eta^2}{2} + \frac1{2a}\Big)S
  - \frac1a\sum_k k\,c_k a^{-k}\Big]\Big\}.$$

No digamma, no incomplete gamma, no loop over samples: $\log\Gamma^*$ from its Stirling series,
the $c_k(\eta)$ and the sum over $k$ by Horner's rule in place. The
correction in braces is small ($|\eta|/2 + O(1/a)$), so the result is as accurate as the
truncation. Truncation (number of $k$ and of Taylor terms) is fixed per band of $a$ with a
bound on $|\eta|$ (``BANDS``: a grid of shape floors ``A_FLOORS`` by $|\eta|$ levels ``ETA_LEVELS``),
chosen so that the dropped terms are below $2\cdot10^{-17}$; a sample takes the row of its shape's
binade and the first level its $|\eta|$ fits in, and beyond $|\eta| = 1$ (the far tails: $> 3\sigma$ at $a = 10$, $> 7\sigma$ for
$a \ge 50$) goes to the convergent expansions.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

from .. import checks

# A grid of bands (a_min, eta_max): truncation for a >= a_min, valid for |eta| < eta_max. Samples
# cluster at |eta| ~ 1/sqrt(a), so most take the first eta level of their shape's row (a third to a
# half of the terms of |eta| < 1). Band index = row * len(ETA_LEVELS) + level. Rows are the binades
# of a (powers of two, the last one cut at ASYMPTOTIC_MIN = 10) and levels powers of two, so that
# vitools.implicit.gamma finds both from floating-point exponents (torch.frexp), without searching.
A_FLOORS = (4096.0, 2048.0, 1024.0, 512.0, 256.0, 128.0, 64.0, 32.0, 16.0, 10.0)    # rows, falling
ETA_LEVELS = (0.125, 0.25, 0.5, 1.0)                                              # levels, rising
assert all(a == 2 * b for a, b in zip(A_FLOORS[:-2], A_FLOORS[1:-1])) and 8 < A_FLOORS[-1] < A_FLOORS[-2]
assert all(2 * a == b for a, b in zip(ETA_LEVELS, ETA_LEVELS[1:])) and ETA_LEVELS[-1] == 1.0
BANDS = tuple((lo, h) for lo in A_FLOORS for h in ETA_LEVELS)
TAIL = 2e-17                 # bound on the dropped part of the bracket (float64 results)
TAIL_32 = 1e-10              # the same for float32 results (their rounding: 6e-8)
# log Gamma*(a) = sum_j B_2j / (2j (2j-1) a^(2j-1)); enough terms for a >= 10 (next < 1e-17)
_LOG_GSTAR = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)
# Taylor coefficients c_{k,n} of c_k(eta), k < 16, n < 28: float(temme_coefficients(16, 28)).
_C = (
    (  # c_0
        -0.3333333333333333, 0.08333333333333333, -0.014814814814814815, 0.0011574074074074073,
        0.0003527336860670194, -0.0001787551440329218, 3.919263178522438e-05, -2.185448510679992e-06,
        -1.85406221071516e-06, 8.296711340953087e-07, -1.7665952736826078e-07, 6.707853543401498e-09,
        1.0261809784240309e-08, -4.382036018453353e-09, 9.14769958223679e-10, -2.5514193994946248e-11,
        -5.830772132550426e-11, 2.4361948020667415e-11, -5.0276692801141755e-12, 1.1004392031956135e-13,
        3.371763262400985e-13, -1.392388722418162e-13, 2.8534893807047445e-14, -5.139111834242572e-16,
        -1.9752288294349442e-15, 8.099521156704561e-16, -1.6522531216398162e-16, 2.5305430097478883e-18
    ),
    (  # c_1
        -0.001851851851851852, -0.003472222222222222, 0.0026455026455026454, -0.0009902263374485596,
        0.00020576131687242798, -4.018775720164609e-07, -1.8098550334489977e-05, 7.64916091608111e-06,
        -1.6120900894563446e-06, 4.647127802807434e-09, 1.378633446915721e-07, -5.752545603517705e-08,
        1.1951628599778148e-08, -1.7543241719747647e-11, -1.0091543710600413e-09, 4.162792991842583e-10,
        -8.56390702649298e-11, 6.067215101604758e-14, 7.1624989648114856e-12, -2.933186643771437e-12,
        5.996696365683689e-13, -2.1671786527323313e-16, -4.978339972369262e-14, 2.0291628823713425e-14,
        -4.13125571381061e-15, 8.286516239883097e-19, 3.4100308869333327e-16, -1.3854195302893971e-16
    ),
    (  # c_2
        0.004133597883597883, -0.0026813271604938273, 0.0007716049382716049, 2.0093878600823047e-06,
        -0.0001073665322636516, 5.2923448829120125e-05, -1.2760635188618728e-05, 3.423578734096138e-08,
        1.3721957309062934e-06, -6.298992138380055e-07, 1.4280614206064242e-07, -2.0477098421990866e-10,
        -1.409252991086752e-08, 6.228974084922022e-09, -1.3670488396617114e-09, 9.428356159014678e-13,
        1.2872252400089318e-10, -5.5645956134363323e-11, 1.197593554636698e-11, -4.1689782251838634e-15,
        -1.0940640427884595e-12, 4.662239946390136e-13, -9.905105763906907e-14, 1.8931876768373515e-17,
        8.859221872591127e-15, -3.737820398046405e-15, 7.868833639035156e-16, -9.000027395741211e-20
    ),
    (  # c_3
        0.0006494341563786008, 0.00022947209362139917, -0.0004691894943952557, 0.00026772063206283885,
        -7.561801671883977e-05, -2.396505113867297e-07, 1.1082654115347302e-05, -5.6749528269915965e-06,
        1.4230900732435883e-06, -2.7861080291528143e-11, -1.6958404091930278e-07, 8.099464905388083e-08,
        -1.9111168485973655e-08, 2.3928620439808118e-12, 2.0620131815488797e-09, -9.460496661855133e-10,
        2.1541049775774907e-10, -1.388823336813903e-14, -2.1894761681963938e-11, 9.790998951171684e-12,
        -2.178219188018096e-12, 6.208819573407901e-17, 2.126978363279737e-13, -9.344688791517433e-14,
        2.045367122678285e-14, -2.58260790403495e-19, -1.9405297673344544e-15, 8.415979290484816e-16
    ),
    (  # c_4
        -0.0008618882909167117, 0.0007840392217200666, -0.0002990724803031902, -1.4638452578843418e-06,
        6.641498215465122e-05, -3.968365047179435e-05, 1.1375726970678419e-05, 2.507497226237533e-10,
        -1.6954149536558305e-06, 8.907507532205309e-07, -2.292934834000805e-07, 2.956794137544049e-11,
        2.8865829742708783e-08, -1.4189739437803219e-08, 3.4463580499464896e-09,
        -2.3024517174528067e-13, -3.9409233028046403e-10, 1.86023389685045e-10, -4.356323005056618e-11,
        1.278600101629623e-15, 4.67927502665792e-12, -2.149246470613483e-12, 4.908815614809652e-13,
        -6.33859148489156e-18, -5.045332069080094e-14, 2.2722958222901286e-14, -5.096082608472402e-15,
        3.0552097557171355e-20
    ),
    (  # c_5
        -0.00033679855336635813, -6.972813758365857e-05, 0.0002772753244959392, -0.00019932570516188847,
        6.797780477937208e-05, 1.419062920643967e-07, -1.3594048189768693e-05, 8.018470256334202e-06,
        -2.291481176508095e-06, -3.252473551298454e-10, 3.4652846491085265e-07, -1.8447187191171344e-07,
        4.8240967037894184e-08, -1.7989466721743514e-14, -6.306194500013523e-09, 3.162417628774568e-09,
        -7.840924253697429e-10, 5.192679165254041e-15, 9.358944242306784e-11, -4.513426216163278e-11,
        1.0799129993116828e-11, -3.661886712685252e-17, -1.210902069055155e-12, 5.680743584990564e-13,
        -1.3249659916340829e-13, 1.8987240764284076e-19, 1.4193390236794701e-14, -6.523214701424697e-15
    ),
    (  # c_6
        0.0005313079364639922, -0.0005921664373536939, 0.0002708782096718045, 7.902353232660328e-07,
        -8.153969367561969e-05, 5.61168275310625e-05, -1.8329116582843375e-05, -3.0796134506033047e-09,
        3.465155368803609e-06, -2.0291327396058603e-06, 5.788792863149004e-07, 2.338630673826657e-13,
        -8.828600746330484e-08, 4.7435958880408125e-08, -1.2545415020710383e-08, 8.649648858010293e-14,
        1.6846058979264062e-09, -8.575492823577594e-10, 2.1598224929232125e-10, -7.613230520476153e-16,
        -2.6639822008536144e-11, 1.3065700536611057e-11, -3.1799163902367977e-12, 4.710976121367431e-18,
        3.6902800842763465e-13, -1.7612674046201426e-13, 4.179066786051478e-14, -2.5344679379178804e-20
    ),
    (  # c_7
        0.00034436760689237765, 5.171790908260592e-05, -0.00033493161081142234, 0.0002812695154763237,
        -0.00010976582244684731, -1.2741009095484485e-07, 2.7744451511563645e-05,
        -1.8263488805711332e-05, 5.7876949497350525e-06, 4.93875893393627e-10, -1.0595367014026043e-06,
        6.166714376110408e-07, -1.7562973359060463e-07, -1.297447328701544e-12, 2.695423606288966e-08,
        -1.4578352908731272e-08, 3.887645959386175e-09, -3.881002251019412e-17, -5.327994173877286e-10,
        2.7437977643314844e-10, -6.995796092070568e-11, 2.589986387486848e-17, 8.856689099669639e-12,
        -4.403168815871311e-12, 1.0865561947091654e-12, -2.0467988447416678e-19,
        -1.2969794421692939e-13, 6.278922059147728e-14
    ),
    (  # c_8
        -0.0006526239185953094, 0.0008394987206720873, -0.000438297098541721, -6.969091458420552e-07,
        0.00016644846642067547, -0.00012783517679769218, 4.629953263691304e-05, 4.557909867922708e-09,
        -1.0595271125805195e-05, 6.783342904865167e-06, -2.1075476666258803e-06,
        -1.7213731432817144e-11, 3.773587741611098e-07, -2.1867506700122867e-07, 6.220228804018927e-08,
        6.597703826733e-16, -9.590386497425686e-09, 5.213214492280807e-09, -1.3991589583935709e-09,
        5.382058999060575e-16, 1.9484714275467745e-10, -1.0127287556389682e-10, 2.6077347197254926e-11,
        -5.090418699993299e-18, -3.3721464474854593e-12, 1.6953089140808568e-12,
        -4.2316254586191543e-13, 3.3823327480704694e-20
    ),
    (  # c_9
        -0.0005967612901927463, -7.204895416020011e-05, 0.0006782308837667328, -0.0006401475260262758,
        0.00027750107634328704, 1.819700838046515e-07, -8.479507117068503e-05, 6.105192082501531e-05,
        -2.1073920183404862e-05, -8.858589014125599e-10, 4.5284535953805374e-06,
        -2.8427815022504407e-06, 8.708234177864641e-07, 3.6886101871706966e-12, -1.534469519070206e-07,
        8.862466778790695e-08, -2.5184812301826817e-08, -1.0225912098215092e-14, 3.896947075815478e-09,
        -2.1267304792235634e-09, 5.737013552805138e-10, -1.8877498501697116e-19, -8.093153869465787e-11,
        4.23827232834492e-11, -1.1002224534207725e-11, 2.3327607706802836e-19, 1.4479903729175772e-12,
        -7.347967787383142e-13
    ),
    (  # c_10
        0.0013324454494800656, -0.0019144384985654776, 0.0011089369134596636, 9.9324041226423e-07,
        -0.0005087450129309319, 0.00042735056665392886, -0.00016858853767910798, -8.1301893922785e-09,
        4.5284402370562144e-05, -3.127053674781734e-05, 1.044986828530338e-05, 4.8435226265680926e-11,
        -2.148256587345626e-06, 1.329369701097492e-06, -4.029569309210103e-07, -1.756787766632329e-13,
        7.014504316366825e-08, -4.040787734999483e-08, 1.1474026743371964e-08, 3.964274685356394e-18,
        -1.7804938269892715e-09, 9.748026254873165e-10, -2.6405338676507616e-10, 5.79487516340376e-18,
        3.764774955354384e-11, -1.983951296757828e-11, 5.185233656748139e-12, -5.749162558269406e-20
    ),
    (  # c_11
        0.001579727660730835, 0.00016251626278391583, -0.0020633421035543276, 0.00213896861856891,
        -0.0010108559391263003, -3.99127055299192e-07, 0.0003623502508476469, -0.00028143901463712157,
        0.00010449513336495887, 2.12114184918303e-09, -2.5779417251947842e-05, 1.7281818956040464e-05,
        -5.641377387290428e-06, -1.1024320105776174e-11, 1.1223224418895174e-06, -6.869339637952674e-07,
        2.0653236975414888e-07, 4.6714772409838506e-14, -3.5609886164949055e-08, 2.0470855345905963e-08,
        -5.809173863328336e-09, -1.3328212875828647e-16, 9.035460439133513e-10, -4.959878251733084e-10,
        1.3481607129399748e-10, -1.670378498659395e-21, -1.939350490392558e-11, 1.027416566641991e-11
    ),
    (  # c_12
        -0.004072512119514016, 0.00640336283380807, -0.004041016108167662, -2.1837328028662328e-06,
        0.002174044180125464, -0.001970044051841889, 0.0008359546974796246, 1.9445447567109655e-08,
        -0.000257793871204217, 0.00019009987368139304, -6.769649993743896e-05, -1.4440629666426571e-10,
        1.5712512518742267e-05, -1.0304008744776894e-05, 3.304517767401387e-06, 7.982976024232571e-13,
        -6.4097794149313e-07, 3.8894624761300054e-07, -1.161834764494887e-07, -2.8168086305964423e-15,
        1.9878012911297094e-08, -1.1407719956357511e-08, 3.2355857064185554e-09, 4.1759462466484876e-20,
        -5.042311271810582e-10, 2.7740247286170716e-10, -7.562101761668138e-11, 9.6044764345341e-20
    ),
    (  # c_13
        -0.0059475779383993, -0.0005401647678926045, 0.00879104135507679, -0.009857631558785612,
        0.005013469503102154, 1.2807521786221875e-06, -0.0020626019342754685, 0.0017109128573523059,
        -0.000676953127141338, -6.901154567656214e-09, 0.00018855128143995903, -0.0001339521566349197,
        4.626318303352804e-05, 4.003423061332135e-11, -1.0255652921494033e-05, 6.612086372797651e-06,
        -2.0913022027253007e-06, -2.095177564960382e-13, 3.975602904199325e-07, -2.395621197881589e-07,
        7.118288338214586e-08, 8.925574871713252e-16, -1.2101547235064677e-08, 6.935061824833439e-09,
        -1.966146445385609e-09, -2.5932086373242068e-18, 3.069041962977549e-10, -1.6916097481155664e-10
    ),
    (  # c_14
        0.01740202778752271, -0.02952788094569912, 0.020045875571402798, 7.0289515966903405e-06,
        -0.012375421071343148, 0.011976293444235255, -0.0054156038466518525, -6.329089339641862e-08,
        0.0018855118129005065, -0.001473473274825001, 0.0005551581009770838, 5.240683441255066e-10,
        -0.00014357913535784835, 9.91812932249433e-05, -3.346083474947831e-05, -3.5755837291098967e-12,
        7.1560851960630075e-06, -4.551680262815553e-06, 1.4236576649271474e-06, 1.8803149079275236e-14,
        -2.662340389892921e-07, 1.5950642189595716e-07, -4.718751467384107e-08, -6.510781264821694e-17,
        7.979509102674677e-09, -4.567346319474522e-09, 1.294400971826025e-09, 6.834550887513605e-22
    ),
    (  # c_15
        0.03024912416090589, 0.0024817436002649977, -0.049939134373457025, 0.05991564300930787,
        -0.03248320760162339, -5.721296865210344e-06, 0.015085251778569354, -0.013261324005088445,
        0.0055515262632426145, 3.026318225703001e-08, -0.0017229548406756724, 0.0012893570099929638,
        -0.00046845138348319875, -1.8302599378930445e-10, 0.00011449739014822654,
        -7.737856522124447e-05, 2.5625836246985202e-05, 1.0766165332658074e-12, -5.324680928242262e-06,
        3.3496348630644643e-06, -1.038125312868401e-06, -5.608908533478749e-15, 1.9150821930676722e-07,
        -1.1418365800203775e-07, 3.365442520915233e-08, 2.393462293063064e-17, -5.66528360574477e-09,
        3.2393825373757883e-09
    ),
)


def temme_coefficients(terms: int, degree: int) -> list[list[Fraction]]:
    r"""Exact Taylor coefficients ``[k][n]`` of $c_k(\eta) = \sum_n c_{k,n}\eta^n$
    ($k <$ ``terms``, $n <$ ``degree``), as Fractions.

    Rational power-series arithmetic: revert $\eta = \mu\sqrt{2(\mu - \log(1+\mu))}/\mu$ for
    $\mu(\eta)$, then $c_0 = (\eta/\mu - 1)/\eta$ and the recursion of the module docstring
    (each step differentiates and divides by $\eta$, so two orders are carried per term).
    Slow (seconds): for tests and for regenerating ``_C``, never on a hot path.
    """
    terms, degree = checks.count("terms", terms), checks.count("degree", degree)
    n = degree + 2 * terms + 2

    def mul(p, q):
        out = [Fraction(0)] * n
        for i, u in enumerate(p):
            if u:
                for j, v in enumerate(q[:n - i]):
                    out[i + j] += u * v
        return out

    def inverse(p):                                   # 1/p, p[0] != 0
        out = [Fraction(0)] * n
        out[0] = 1 / p[0]
        for k in range(1, n):
            out[k] = -sum(p[j] * out[k - j] for j in range(1, k + 1)) / p[0]
        return out

    # eta = mu * h(mu), h = sqrt(2 (1/2 - mu/3 + mu^2/4 - ...)), by the square-root recurrence
    r = [Fraction(2 * (-1) ** k, k + 2) for k in range(n)]
    h = [Fraction(1)] + [Fraction(0)] * (n - 1)
    for k in range(1, n):
        h[k] = (r[k] - sum(h[j] * h[k - j] for j in range(1, k))) / 2
    hinv = inverse(h)
    mu = [Fraction(0), Fraction(1)] + [Fraction(0)] * (n - 2)
    for _ in range(n):                                # mu = eta * hinv(mu), one order per pass
        comp, power = [Fraction(0)] * n, [Fraction(1)] + [Fraction(0)] * (n - 1)
        for coef in hinv:
            comp = [c + coef * p for c, p in zip(comp, power)]
            power = mul(power, mu)
        mu = [Fraction(0)] + comp[:n - 1]
    eta_over_mu = inverse(mu[1:] + [Fraction(0)])
    # Stirling coefficients g_k = [a^-k] exp(sum_j B_2j / (2j (2j-1)) a^(1-2j))
    bern = [Fraction(1)] + [Fraction(0)] * (2 * terms + 2)
    for m in range(1, len(bern)):
        bern[m] = -sum(math.comb(m + 1, k) * bern[k] for k in range(m)) / (m + 1)
    log_g = [Fraction(0)] + [bern[k + 1] / (k * (k + 1)) if k % 2 else Fraction(0)
                             for k in range(1, terms + 1)]
    g, power = [Fraction(1)] + [Fraction(0)] * terms, [Fraction(1)] + [Fraction(0)] * terms
    for j in range(1, terms + 1):
        power = [sum(power[i] * log_g[m - i] for i in range(m + 1)) for m in range(terms + 1)]
        g = [x + y / math.factorial(j) for x, y in zip(g, power)]
    c = [eta_over_mu[1:]]
    for k in range(1, terms):
        prev = c[-1]
        eta_ck = [i * prev[i] + (-1) ** k * g[k] * eta_over_mu[i - 1] for i in range(1, len(prev))]
        assert eta_ck[0] == 0                         # the pole cancels
        c.append(eta_ck[1:])
    return [ck[:degree] for ck in c]


@functools.cache
def truncation(a_min: float, eta_max: float, tail: float = TAIL) -> tuple[int, ...]:
    r"""Taylor terms kept of each $c_k$ (one count per $k$, trailing zeros dropped) so that, for
    $a \ge$ ``a_min`` and $|\eta| \le$ ``eta_max``, the dropped part of the bracket is below ``tail``
    (``TAIL`` for float64 results, ``TAIL_32`` for float32 ones)."""
    tail = float(checks.positive("tail", torch.tensor(float(tail))))
    a_min = float(checks.positive("a_min", torch.tensor(float(a_min))))
    eta_max = float(checks.positive("eta_max", torch.tensor(float(eta_max))))
    degrees = []
    for k, ck in enumerate(_C):
        weight = (eta_max ** 2 / 2 + 1 / (2 * a_min)) * a_min ** -k + k * a_min ** (-k - 1)
        dropped, need = 0.0, 0
        for n in range(len(ck) - 1, -1, -1):
            dropped += abs(ck[n]) * eta_max ** n * weight
            if dropped >= tail:
                need = n + 1
                break
        if need == len(ck):
            raise ValueError(f"eta_max too large for the stored Taylor terms, got eta_max={eta_max!r}")
        degrees.append(need)
    while len(degrees) > 1 and not degrees[-1]:
        degrees.pop()
    return tuple(degrees)


def _eta_of_mu(mu: torch.Tensor) -> torch.Tensor:
    r"""$\eta$ from $\mu = \lambda - 1$ [n] (overwrites ``mu`` with its sign)."""
    return torch.log1p(mu).neg_().add_(mu).mul_(2).sqrt_().mul_(mu.sign_())


def mu_bounds(eta_max: float) -> tuple[float, float]:
    r"""The interval of $\mu = \lambda - 1$ on which $|\eta| \le$ ``eta_max``
    (by bisection in float64, pulled in by a relative 1e-12)."""
    eta_max = float(checks.positive("eta_max", torch.tensor(float(eta_max))))

    def solve(lo, hi):               # lambda - 1 - log(lambda) = eta_max^2/2, t = log(lambda) in [lo, hi]
        f = lambda t: math.expm1(t) - t - eta_max ** 2 / 2     # noqa: E731 (monotone on each side of 0)
        sign_lo = f(lo) > 0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if (f(mid) > 0) == sign_lo else (lo, mid)
        return math.expm1(0.5 * (lo + hi))

    return solve(-700.0, 0.0) * (1 - 1e-12), solve(0.0, 700.0) * (1 - 1e-12)


def _temme_dz_da(x: torch.Tensor, a: torch.Tensor, e: torch.Tensor, band, tail: float = TAIL) -> torch.Tensor:
    r"""$dz/da$ at ``x`` [n] for shapes ``a`` [n] (float64, all $\ge$ ``band[0]``), given ``e`` =
    $\eta$ [n] with $|\eta| \le$ ``band[1]``: the closed form of the module docstring,
    truncated per ``band``.

    Horner's rule in place, in $\eta$ for each $c_k$ and in $1/a$ over $k$ (a few hundred
    elementwise operations at most, no temporaries per term).
    """
    degrees = truncation(*band, tail)
    ia = a.reciprocal()
    s, t, ck = torch.zeros_like(x), torch.zeros_like(x), torch.empty_like(x)   # S, sum k c_k a^-k, c_k
    for k in range(len(degrees) - 1, -1, -1):
        coefs = _C[k][:degrees[k]] or (0.0,)
        ck.fill_(coefs[-1])
        for c in reversed(coefs[:-1]):
            ck.mul_(e).add_(c)
        s.mul_(ia).add_(ck)
        t.mul_(ia).add_(ck, alpha=float(k))
    bracket = ck.copy_(e).mul_(e).add_(ia).mul_(-0.5).mul_(s).sub_(e, alpha=0.5).sub_(t.mul_(ia))
    ia2, log_gstar = t.copy_(ia).mul_(ia), s.fill_(_LOG_GSTAR[-1])    # (reusing the S and T buffers)
    for coef in reversed(_LOG_GSTAR[:-1]):                      # Horner in 1/a^2
        log_gstar.mul_(ia2).add_(coef)
    bracket.mul_(log_gstar.mul_(ia).exp_()).add_(1)
    return bracket.mul_(x).mul_(ia)
