// The smallest dispatch that still orders against its neighbours: one invocation adds 1
// to a counter that every dispatch of it reads and writes. `elbo bench` times runs of it
// to measure what a dispatch costs apart from its work (bench::fixed_costs).

@group(0) @binding(0) var<storage, read_write> counter: array<u32>;

@compute @workgroup_size(64)
fn touch(@builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        counter[0] += 1u;
    }
}
