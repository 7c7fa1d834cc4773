"""lstmkit in one minute: a drop-in for torch.nn.LSTM, every classic cell, gates you can see.

Run: python examples/quickstart.py
"""

import torch

import lstmkit

torch.manual_seed(0)
x = torch.randn(50, 8, 32)  # (time, batch, features)

# 1. A drop-in for torch.nn.LSTM: same arguments, weight names, shapes and numbers.
reference = torch.nn.LSTM(32, 64, num_layers=2, bidirectional=True)
lstm = lstmkit.LSTM(32, 64, num_layers=2, bidirectional=True)
lstm.load_state_dict(reference.state_dict())
output, (h_n, c_n) = lstm(x)
expected, _ = reference(x)
print(f"lstmkit.LSTM vs torch.nn.LSTM: output {tuple(output.shape)}, "
      f"max |difference| = {(output - expected).abs().max().item():.1e}")

# 2. Every classic cell behind the same API.
print(f"\n{'cell':<24} {'parameters':>10}  {'output':<12}  final state")
for layer in [
    lstmkit.RNN(32, 64),
    lstmkit.GRU(32, 64),
    lstmkit.LSTM(32, 64),
    lstmkit.PeepholeLSTM(32, 64),
    lstmkit.CIFGLSTM(32, 64),
    lstmkit.LayerNormLSTM(32, 64),
    lstmkit.LSTM(32, 64, forget_gate=False),  # an ablation of Greff et al. (2017)
]:
    output, state = layer(x)
    parameters = sum(p.numel() for p in layer.parameters())
    states = " + ".join(str(tuple(s.shape)) for s in (state if isinstance(state, tuple) else (state,)))
    print(f"{layer.cell.describe():<24} {parameters:>10,}  {str(tuple(output.shape)):<12}  {states}")

# 3. See the gates: forget-gate bias 1 (Jozefowicz et al. 2015) keeps the forget gate open.
lstm = lstmkit.LSTM(32, 64, forget_bias=1.0)
padded_lengths = [50, 50, 40, 30, 20, 10, 5, 1]
with torch.no_grad():
    output, (h_n, c_n), trace = lstm(x, lengths=padded_lengths, return_gates=True)
forget = trace.gates["forget"][0, :, 0]  # layer 0, every step, sequence 0: (T, H)
print("\nforget gate of sequence 0, mean over units, steps 0-4: "
      + " ".join(f"{value:.3f}" for value in forget.mean(-1)[:5].tolist()))
print(f"sequence 7 has 1 valid step: output at step 1 is zero: {bool(output[1, 7].eq(0).all())}")

# 4. Stream one step at a time: the same numbers as the whole sequence.
state = None
for t in range(x.shape[0]):
    step_output, state = lstm.step(x[t], state)
whole_output, _ = lstm(x)
print(f"step() x 50 vs forward(): max |difference| = {(step_output - whole_output[-1]).abs().max().item():.1e}")
