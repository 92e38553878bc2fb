// Thin bridge from the C benchmark descriptions (shim.h) to Google Benchmark.
//
// Each dsv_bench becomes one Google Benchmark timed on the wall clock (the
// kernels run on several threads, so the main thread's CPU time would
// understate them), in milliseconds. Each step is timed on its own (manual
// time), so the untimed prepare() needs no PauseTiming/ResumeTiming; the
// reported time is the mean step, and the counter call_median_ms the median
// step, the statistic tools/bench_torch.py reports for PyTorch. The command
// line is Google Benchmark's own (--benchmark_filter,
// --benchmark_format=json, --benchmark_repetitions, ...). Only this file is
// C++.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "shim.h"

namespace {

std::vector<const dsv_bench *> &registry()
{
    static std::vector<const dsv_bench *> r;
    return r;
}

bool failed = false;

void run_one(benchmark::State &st, const dsv_bench *b)
{
    char label[256] = "";
    char msg[512] = "";
    void *state = nullptr;
    dsv_bench_result r =
        b->setup(b->arg, &state, label, sizeof(label), msg, sizeof(msg));
    if (r != DSV_BENCH_OK) {
        if (r == DSV_BENCH_FAIL) {
            failed = true;
            st.SkipWithError(msg);
        } else {
            std::string m = std::string("skipped: ") + msg;
            st.SkipWithError(m.c_str());
        }
        for (auto _ : st) {
        }
        return;
    }
    std::vector<double> times;
    for (auto _ : st) {
        if (b->prepare && b->prepare(state, msg, sizeof(msg))) {
            failed = true;
            st.SkipWithError(msg);
            break;
        }
        auto t0 = std::chrono::steady_clock::now();
        int e = b->step(state, msg, sizeof(msg));
        std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
        if (e) {
            failed = true;
            st.SkipWithError(msg);
            break;
        }
        st.SetIterationTime(dt.count());
        times.push_back(dt.count());
    }
    if (!times.empty()) {
        auto mid = times.begin() + times.size() / 2;
        std::nth_element(times.begin(), mid, times.end());
        double med = *mid;
        if (times.size() % 2 == 0)
            med = (med + *std::max_element(times.begin(), mid)) / 2;
        st.counters["call_median_ms"] = med * 1e3;
    }
    if (b->flops > 0)
        st.counters["FLOP/s"] = benchmark::Counter(
            b->flops, benchmark::Counter::kIsIterationInvariantRate);
    st.SetLabel(label);
    b->teardown(state);
}

} // namespace

extern "C" void dsv_bench_register(const dsv_bench *b)
{
    registry().push_back(b);
}

extern "C" void dsv_bench_context(const char *key, const char *value)
{
    benchmark::AddCustomContext(key, value);
}

extern "C" int dsv_bench_main(int argc, char **argv)
{
    for (const dsv_bench *b : registry())
        benchmark::RegisterBenchmark(b->name, run_one, b)
            ->Unit(benchmark::kMillisecond)
            ->UseManualTime();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return failed ? 1 : 0;
}
