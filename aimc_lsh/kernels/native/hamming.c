/*
 * Hamming stage of hashed layers, inference only: binarize, match and reconstruct in one pass.
 *
 * For every position p (a row of `pre`, the k projections of one input patch, channels-last):
 *   1. the signs of the k projections are packed into ceil(k / 64) 64-bit words
 *      (bit = 1 for +0.0 and positive values, 0 for negative ones and -0.0: copysign semantics,
 *      as the PyTorch path's binarize);
 *   2. for every output o, the number of disagreeing bits d = popcount(x_bits XOR w_bits[o])
 *      (the weight codes are packed the same way; padding bits are 0 on both sides);
 *   3. out[p, o] = table[o, d] * x_norm[p], where table[o, d] = sin(pi/2 (k - 2d) / k) * ||w_o||
 *      is prepared by the caller: cos(pi/2 (1 - S/k)) with S = k - 2d.
 *
 * Plain C99; built once per machine by aimc_lsh.utils.build_shared_library and called through ctypes.
 * Positions are split over n_threads OpenMP threads when built with -fopenmp: linked against
 * libgomp.so.1, it shares the OpenMP runtime PyTorch has loaded already (same soname), so its threads
 * are PyTorch's own pool, not a second one competing for the cores. Without -fopenmp it runs serially.
 */
#include <math.h>
#include <stdint.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

/* Signs of n (<= 64) floats as bits: bit b = 1 when row[b] is +0.0 or positive. */
static uint64_t pack_signs(const float *row, int64_t n)
{
    uint64_t word = 0;
    int64_t b = 0;
#ifdef __AVX__
    for (; b + 8 <= n; b += 8) {
        uint64_t negative = (uint64_t)_mm256_movemask_ps(_mm256_loadu_ps(row + b));
        word |= (~negative & 0xffu) << b;
    }
#endif
    for (; b < n; ++b)
        word |= (uint64_t)(!signbit(row[b])) << b;
    return word;
}

/* Returns the ABI version, checked by the Python side after loading. */
int64_t aimc_hamming_version(void) { return 2; }

/* Returns 1 when built with OpenMP (n_threads is used), 0 when serial. */
int64_t aimc_hamming_parallel(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void aimc_hamming_cosine(const float *pre, int64_t n_positions, int64_t k,
                         const uint64_t *weight_bits, int64_t n_out, int64_t n_words,
                         const float *table, const float *x_norm, float *out, int64_t n_threads)
{
    (void)n_threads; /* unused in a serial build */
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1)
    for (int64_t p = 0; p < n_positions; ++p) {
        uint64_t bits[n_words];
        const float *row = pre + p * k;
        for (int64_t w = 0; w < n_words; ++w) {
            int64_t start = w * 64;
            bits[w] = pack_signs(row + start, k - start < 64 ? k - start : 64);
        }
        const float scale = x_norm[p];
        float *dst = out + p * n_out;
        for (int64_t o = 0; o < n_out; ++o) {
            const uint64_t *code = weight_bits + o * n_words;
            int64_t disagree = 0;
            for (int64_t w = 0; w < n_words; ++w)
                disagree += __builtin_popcountll(bits[w] ^ code[w]);
            dst[o] = table[o * (k + 1) + disagree] * scale;
        }
    }
}
