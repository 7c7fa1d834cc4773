"""Stepping by hand: an autoregressive forecaster with lstmkit.LSTMCell and a variant.

    python examples/stepping_by_hand.py

Each cell learns next-value prediction on 16 sine waves (30 Adam iterations over 29 steps),
then forecasts 59 steps by feeding each prediction back in as the next input.
"""

import torch
import lstmkit

torch.manual_seed(0)
t = torch.arange(0, 15, 0.25)
waves = torch.sin(t + 6.28 * torch.rand(16, 1)).unsqueeze(-1)          # (B, T, 1) sine waves

def fit_and_roll_out(cell, readout, iterations=30):
    optimizer = torch.optim.Adam([*cell.parameters(), *readout.parameters()], lr=3e-2)
    for _ in range(iterations):                                          # next-value prediction
        state, loss = None, 0.0
        for x_t, y_t in zip(waves[:, :29].unbind(1), waves[:, 1:30].unbind(1)):
            state = cell(x_t, state)
            loss = loss + (readout(state[0]) - y_t).pow(2).mean() / 29
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():                                               # then feed predictions back
        state, x_t, predictions = None, waves[:, 0], []
        for _ in range(59):
            state = cell(x_t, state)
            x_t = readout(state[0])
            predictions.append(x_t)
    return loss.item(), (torch.stack(predictions, 1) - waves[:, 1:]).pow(2).mean().item()

for cell in (lstmkit.LSTMCell(1, 16), lstmkit.PeepholeLSTMCell(1, 16, forget_bias=1.0)):
    train, rollout = fit_and_roll_out(cell, torch.nn.Linear(16, 1))
    print(f"{cell}: training MSE {train:.4f}, 59-step roll-out MSE {rollout:.4f}")
