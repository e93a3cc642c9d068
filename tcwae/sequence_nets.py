"""The networks of the sequence models (R-WAE, seed 002, and DSVAE, Li and Mandt 2018).

One autoencoder serves R-WAE(MMD), R-WAE(GAN) and DSVAE, so that their results differ only by the
objective, as the image methods share the Table-3 networks. What the descriptions available here
fix (the abstract, DESIGN.md and the caption of R-WAE's Fig. 1 as quoted by public reviews): the
static code s is inferred from x_1:T with an LSTM; z_t from h_t and z_{t-1} with another LSTM;
the learned prior p(z_t | z_<t) is recurrent; for generation (s, z_t) are concatenated into an
LSTM whose hidden state feeds the frame decoder; the weakly supervised variant concatenates a
categorical code a there too and infers a from the dynamic codes. Our choices where they are
silent (collected in README, "Sequence models"):

- frame encoder: the Table-3 encoder network unchanged except its output layer, whose 2 d_z units
  become `hidden` frame features (no nonlinearity after it, as in Table 3);
- one bidirectional LSTM (one layer, `hidden` units a direction) over the frame features: its
  forward output at t is h_t (it has seen the frames up to t); the last states of both
  directions, concatenated, give (mean, log-variance) of q(s | x_1:T) through a linear layer
  (DSVAE's q(f | x_1:T));
- q(z_t | x_<=t, z_<t): an LSTM cell on (h_t, z_{t-1}), a linear layer of its hidden state giving
  (mean, log-variance); z_0 = 0;
- p(z_t | z_<t): a one-layer LSTM over z_{t-1} (z_0 = 0), a linear layer giving (mean,
  log-variance); in training it runs along the posterior's own samples z_<t (teacher forcing, as
  in DSVAE), in generation along its own samples; p(s) = N(0, I);
- decoder: a one-layer LSTM over (s, z_t[, a]) whose hidden state h'_t is decoded into frame t by
  the Table-3 decoder (input width `hidden` instead of d_z);
- action code (optional, K actions known): an LSTM over z_1:T, a linear layer of its last hidden
  state giving the logits of q(a | z_1:T); relaxed by Gumbel-softmax (temperature 0.5) in
  training, the one-hot argmax in evaluation; its prior is uniform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tcwae.nets import Decoder, Encoder

ACTION_TEMPERATURE = 0.5  # Gumbel-softmax temperature of the relaxed action code (our choice)
_TINY = 1e-10


def gumbel_softmax_sample(
    logits: torch.Tensor, uniform: torch.Tensor, temperature: float = ACTION_TEMPERATURE
) -> torch.Tensor:
    """Relaxed one-hot sample softmax((logits + g) / tau), g = -log(-log u) (Jang et al. 2017,
    Eq. 1; Maddison et al. 2017), from uniforms `u` in [0, 1) drawn by the caller."""
    gumbel = -torch.log(-torch.log(uniform.clamp(_TINY, 1.0 - 1e-7)))
    return F.softmax((logits + gumbel) / temperature, dim=-1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * noise for a diagonal Gaussian (mean, log-variance)."""
    return mu + torch.exp(0.5 * logvar) * noise


class SequenceAutoencoder(nn.Module):
    """Sequences [B, T, C, 64, 64] -> static code, dynamic codes, prior, frame logits.

    `forward` is the training pass (the trainer wraps this module in DDP, which synchronises only
    what runs through `forward`); `infer`, `sample_dynamics`, `action_of` and `decode` serve
    evaluation.
    """

    def __init__(self, nchan: int, ds: int, dz: int, hidden: int, num_actions: int = 0) -> None:
        super().__init__()
        if hidden < 2 or hidden % 2:
            raise ValueError(f"hidden must be an even number >= 2, got {hidden}")
        self.nchan, self.ds, self.dz, self.hidden = nchan, ds, dz, hidden
        self.num_actions = num_actions
        self.frame_encoder = Encoder(nchan, hidden // 2).features
        self.frame_rnn = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.static_head = nn.Linear(2 * hidden, 2 * ds)
        self.posterior_cell = nn.LSTMCell(hidden + dz, hidden)
        self.posterior_head = nn.Linear(hidden, 2 * dz)
        self.prior_rnn = nn.LSTM(dz, hidden, batch_first=True)
        self.prior_head = nn.Linear(hidden, 2 * dz)
        if num_actions:
            self.action_rnn = nn.LSTM(dz, hidden, batch_first=True)
            self.action_head = nn.Linear(hidden, num_actions)
        self.decoder_rnn = nn.LSTM(ds + dz + num_actions, hidden, batch_first=True)
        self.decoder = Decoder(nchan, hidden)

    def encode_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h [B, T, hidden], summary [B, 2 hidden]) of x [B, T, C, 64, 64]: h_t is the forward
        LSTM output at t, the summary the last states of both directions."""
        features = self.frame_encoder(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        outputs, (last, _) = self.frame_rnn(features)
        return outputs[..., : self.hidden], torch.cat([last[0], last[1]], dim=1)

    def static_posterior(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) [B, ds] of q(s | x_1:T)."""
        mu, logvar = self.static_head(summary).chunk(2, dim=1)
        return mu, logvar

    def dynamic_posterior(
        self, h: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, logvar, z) [B, T, dz] of q(z_t | x_<=t, z_<t); z_t = mu_t without `noise`."""
        batch, frames = h.shape[:2]
        code = h.new_zeros(batch, self.dz)
        state = None
        means, logvars, codes = [], [], []
        for t in range(frames):
            state = self.posterior_cell(torch.cat([h[:, t], code], dim=1), state)
            mu, logvar = self.posterior_head(state[0]).chunk(2, dim=1)
            code = mu if noise is None else reparameterise(mu, logvar, noise[:, t])
            means.append(mu)
            logvars.append(logvar)
            codes.append(code)
        return torch.stack(means, 1), torch.stack(logvars, 1), torch.stack(codes, 1)

    def prior(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) [B, T, dz] of p(z_t | z_<t) along given codes z [B, T, dz] (teacher
        forcing: step t sees z_1..z_{t-1})."""
        previous = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)
        hidden, _ = self.prior_rnn(previous)
        mu, logvar = self.prior_head(hidden).chunk(2, dim=2)
        return mu, logvar

    def sample_dynamics(self, noise: torch.Tensor) -> torch.Tensor:
        """Codes z_1:T [B, T, dz] rolled out from the prior, step t fed its own sample z_{t-1};
        `noise` [B, T, dz] standard normal."""
        code = noise.new_zeros(noise.shape[0], self.dz)
        state = None
        codes = []
        for t in range(noise.shape[1]):
            hidden, state = self.prior_rnn(code[:, None], state)
            mu, logvar = self.prior_head(hidden[:, 0]).chunk(2, dim=1)
            code = reparameterise(mu, logvar, noise[:, t])
            codes.append(code)
        return torch.stack(codes, 1)

    def action_of(
        self, z: torch.Tensor, uniform: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q(a | z_1:T) probabilities, action code) [B, K]: a relaxed sample given `uniform`,
        else the one-hot argmax; both [B, 0] without actions."""
        if not self.num_actions:
            empty = z.new_zeros(z.shape[0], 0)
            return empty, empty
        _, (last, _) = self.action_rnn(z)
        logits = self.action_head(last[0])
        probs = F.softmax(logits, dim=1)
        if uniform is None:
            return probs, F.one_hot(logits.argmax(1), self.num_actions).to(z.dtype)
        return probs, gumbel_softmax_sample(logits, uniform)

    def decode(self, s: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Frame logits [B, T, C, 64, 64] from s [B, ds], z [B, T, dz] and action [B, K]."""
        frames = z.shape[1]
        codes = torch.cat(
            [s[:, None].expand(-1, frames, -1), z, action[:, None].expand(-1, frames, -1)], dim=2
        )
        hidden, _ = self.decoder_rnn(codes)
        return self.decoder(hidden.flatten(0, 1)).unflatten(0, z.shape[:2])

    def infer(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic codes of x: static mean, dynamic means (z_{t-1} = its mean), action."""
        h, summary = self.encode_frames(x)
        s, _ = self.static_posterior(summary)
        _, _, z = self.dynamic_posterior(h, None)
        _, action = self.action_of(z)
        return {"s": s, "z": z, "action": action}

    def forward(
        self,
        x: torch.Tensor,
        static_noise: torch.Tensor,
        dynamic_noise: torch.Tensor,
        prior_noise: torch.Tensor | None = None,
        action_uniform: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training pass: posterior samples, the prior along them and the frame logits.

        With `prior_noise` also a sample z^_t ~ p(z_t | z_<t) per frame (`prior_z`), which the
        WAE divergences compare with the posterior samples.
        """
        h, summary = self.encode_frames(x)
        s_mu, s_logvar = self.static_posterior(summary)
        s = reparameterise(s_mu, s_logvar, static_noise)
        z_mu, z_logvar, z = self.dynamic_posterior(h, dynamic_noise)
        prior_mu, prior_logvar = self.prior(z)
        action_probs, action = self.action_of(z, action_uniform)
        out = {
            "s": s,
            "s_mu": s_mu,
            "s_logvar": s_logvar,
            "z": z,
            "z_mu": z_mu,
            "z_logvar": z_logvar,
            "prior_mu": prior_mu,
            "prior_logvar": prior_logvar,
            "action_probs": action_probs,
            "logits": self.decode(s, z, action),
        }
        if prior_noise is not None:
            out["prior_z"] = reparameterise(prior_mu, prior_logvar, prior_noise)
        return out
