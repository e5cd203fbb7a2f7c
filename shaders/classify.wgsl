// Softmax cross-entropy for classifiers (the `probe` command): one invocation
// per row of logits. Writes d loss / d logits = (softmax - onehot) / rows for
// the mean loss over the batch's live rows, and per row (loss, correct).

struct Classify {
    m: u32,       // rows, a multiple of 4
    classes: u32, // C
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Classify;
@group(0) @binding(1) var<uniform> step: Step;
// logits (m, C)
@group(0) @binding(2) var logits: texture_storage_2d<rgba32float, read>;
// class of each row (m)
@group(0) @binding(3) var<storage, read> labels: array<u32>;
// d loss / d logits (m, C)
@group(0) @binding(4) var d_logits: texture_storage_2d<rgba32float, write>;
// per row (loss, 1 if the largest logit is the label's) (m)
@group(0) @binding(5) var<storage, read_write> row_loss: array<vec2<f32>>;

fn logit(row: u32, c: u32) -> f32 {
    return textureLoad(logits, vec2<u32>(c / 4u, row))[c % 4u];
}

@compute @workgroup_size(64)
fn softmax_cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(gid, nwg);
    if row >= p.m {
        return;
    }
    let live = row < step.rows;
    let label = labels[row];
    var top = logit(row, 0u);
    var arg = 0u;
    for (var c = 1u; c < p.classes; c++) {
        let v = logit(row, c);
        if v > top {
            top = v;
            arg = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        sum += exp(logit(row, c) - top);
    }
    let scale = select(0.0, step.inv_rows, live);
    for (var t = 0u; t < (p.classes + 3u) / 4u; t++) {
        var g = vec4<f32>(0.0);
        for (var lane = 0u; lane < 4u; lane++) {
            let c = t * 4u + lane;
            if c < p.classes {
                g[lane] = (exp(logit(row, c) - top) / sum - select(0.0, 1.0, c == label)) * scale;
            }
        }
        textureStore(d_logits, vec2<u32>(t, row), g);
    }
    let loss = log(sum) + top - logit(row, label);
    row_loss[row] = select(vec2<f32>(0.0), vec2<f32>(loss, select(0.0, 1.0, arg == label)), live);
}
