"""The networks of the sequence models (R-WAE, seed 002, and DSVAE, Li and Mandt 2018).

`SequenceAutoencoder` serves R-WAE(MMD) and R-WAE(GAN), so that their results differ only by the
divergence; `DSVAEAutoencoder` is DSVAE's own model (its per-frame decoder and "full q"
posterior), sharing the frame encoder, q(s | x_1:T), the prior and the action code with R-WAE's
(both derive from `SequenceCodes`). What the descriptions of R-WAE available here
fix (the abstract, DESIGN.md and the caption of R-WAE's Fig. 1 as quoted by public reviews): the
static code s is inferred from x_1:T with an LSTM; z_t from h_t and z_{t-1} with another LSTM;
the learned prior p(z_t | z_<t) is recurrent; for generation (s, z_t) are concatenated into an
LSTM whose hidden state feeds the frame decoder; the weakly supervised variant concatenates a
categorical code a there too and infers a from the dynamic codes. Our choices where they are
silent (collected in docs/sequences.md):

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

DSVAE (`DSVAEAutoencoder`), as Li and Mandt (2018) and their reference code have it: the
generative model p(s) prod_t p(z_t | z_<t) p(x_t | z_t, s) (their Eq. 1; the action code, when
there is one, joins s), so frame t is decoded from (s, z_t) alone by the Table-3 decoder (input
width ds + dz [+ K]); the "full q" posterior q(s | x_1:T) q(z_1:T | s, x_1:T), the second factor a
bidirectional LSTM over (frame features, s) followed by a forward RNN (tanh) whose output at t
gives (mean, log-variance) of z_t, each z_t drawn independently given (s, x_1:T). The frame
encoder, q(s | x_1:T), p(z_t | z_<t) and the action code are R-WAE's (above).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tcwae.nets import Decoder, Encoder

ACTION_TEMPERATURE = 0.5  # Gumbel-softmax temperature of the relaxed action code (our choice)
_TINY = 1e-10


class FrameEncoding(NamedTuple):
    """A batch of sequences seen by the frame encoder and the bidirectional frame LSTM."""

    features: torch.Tensor  # [B, T, hidden] per-frame encoder outputs
    forward: torch.Tensor  # [B, T, hidden] the LSTM's forward outputs h_t
    summary: torch.Tensor  # [B, 2 hidden] the last states of both directions


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


class SequenceCodes(nn.Module):
    """What both sequence autoencoders share: frame encoder and bidirectional LSTM, q(s | x_1:T),
    the learned prior p(z_t | z_<t) and the action code. Subclasses add the dynamic posterior
    (`build_posterior`, `dynamic_posterior`) and the decoder (`build_decoder`, `decode`).

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
        self.build_posterior()
        self.prior_rnn = nn.LSTM(dz, hidden, batch_first=True)
        self.prior_head = nn.Linear(hidden, 2 * dz)
        if num_actions:
            self.action_rnn = nn.LSTM(dz, hidden, batch_first=True)
            self.action_head = nn.Linear(hidden, num_actions)
        self.build_decoder()

    def build_posterior(self) -> None:
        raise NotImplementedError

    def build_decoder(self) -> None:
        raise NotImplementedError

    def encode_frames(self, x: torch.Tensor) -> FrameEncoding:
        """Features [B, T, hidden] of x [B, T, C, 64, 64], the frame LSTM's forward outputs h_t
        [B, T, hidden] (h_t has seen the frames up to t) and its summary [B, 2 hidden] (the last
        states of both directions)."""
        features = self.frame_encoder(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        outputs, (last, _) = self.frame_rnn(features)
        summary = torch.cat([last[0], last[1]], dim=1)
        return FrameEncoding(features, outputs[..., : self.hidden], summary)

    def static_posterior(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) [B, ds] of q(s | x_1:T)."""
        mu, logvar = self.static_head(summary).chunk(2, dim=1)
        return mu, logvar

    def dynamic_posterior(
        self, frames: FrameEncoding, s: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, logvar, z) [B, T, dz] of q(z_1:T | ...); z = mu without `noise`."""
        raise NotImplementedError

    def decode(self, s: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Frame logits [B, T, C, 64, 64] from s [B, ds], z [B, T, dz] and action [B, K]."""
        raise NotImplementedError

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

    def infer(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic codes of x: static mean, dynamic means (given the static mean), action."""
        frames = self.encode_frames(x)
        s, _ = self.static_posterior(frames.summary)
        _, _, z = self.dynamic_posterior(frames, s, None)
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
        frames = self.encode_frames(x)
        s_mu, s_logvar = self.static_posterior(frames.summary)
        s = reparameterise(s_mu, s_logvar, static_noise)
        z_mu, z_logvar, z = self.dynamic_posterior(frames, s, dynamic_noise)
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


class SequenceAutoencoder(SequenceCodes):
    """R-WAE's autoencoder: q(z_t | x_<=t, z_<t) an LSTM cell on (h_t, z_{t-1}); frame t decoded
    from the hidden state of an LSTM over (s, z_t[, a]), so it depends on z_1..z_t."""

    def build_posterior(self) -> None:
        self.posterior_cell = nn.LSTMCell(self.hidden + self.dz, self.hidden)
        self.posterior_head = nn.Linear(self.hidden, 2 * self.dz)

    def build_decoder(self) -> None:
        self.decoder_rnn = nn.LSTM(
            self.ds + self.dz + self.num_actions, self.hidden, batch_first=True
        )
        self.decoder = Decoder(self.nchan, self.hidden)

    def dynamic_posterior(
        self, frames: FrameEncoding, s: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, logvar, z) [B, T, dz] of q(z_t | x_<=t, z_<t) (s is not an input here);
        z_t = mu_t without `noise`, and z_0 = 0."""
        h = frames.forward
        batch, length = h.shape[:2]
        code = h.new_zeros(batch, self.dz)
        state = None
        means, logvars, codes = [], [], []
        for t in range(length):
            state = self.posterior_cell(torch.cat([h[:, t], code], dim=1), state)
            mu, logvar = self.posterior_head(state[0]).chunk(2, dim=1)
            code = mu if noise is None else reparameterise(mu, logvar, noise[:, t])
            means.append(mu)
            logvars.append(logvar)
            codes.append(code)
        return torch.stack(means, 1), torch.stack(logvars, 1), torch.stack(codes, 1)

    def decode(self, s: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Frame logits [B, T, C, 64, 64]: the decoder LSTM over (s, z_t, a), then Table 3's
        decoder on its hidden state at t."""
        hidden, _ = self.decoder_rnn(frame_codes(s, z, action))
        return self.decoder(hidden.flatten(0, 1)).unflatten(0, z.shape[:2])


class DSVAEAutoencoder(SequenceCodes):
    """DSVAE's model (Li and Mandt 2018): per-frame decoder p(x_t | z_t, s) and the "full q"
    posterior q(z_1:T | s, x_1:T)."""

    def build_posterior(self) -> None:
        self.posterior_rnn = nn.LSTM(
            self.hidden + self.ds, self.hidden, batch_first=True, bidirectional=True
        )
        self.posterior_mixer = nn.RNN(2 * self.hidden, self.hidden, batch_first=True)
        self.posterior_head = nn.Linear(self.hidden, 2 * self.dz)

    def build_decoder(self) -> None:
        self.decoder = Decoder(self.nchan, self.ds + self.dz + self.num_actions)

    def dynamic_posterior(
        self, frames: FrameEncoding, s: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, logvar, z) [B, T, dz] of DSVAE's full q(z_1:T | s, x_1:T) = prod_t N(z_t; mu_t,
        sigma_t^2), (mu_t, sigma_t) from a bidirectional LSTM over (frame features, s) followed
        by a forward RNN; z = mu without `noise`."""
        features = frames.features
        static = s[:, None].expand(-1, features.shape[1], -1)
        both, _ = self.posterior_rnn(torch.cat([features, static], dim=2))
        mixed, _ = self.posterior_mixer(both)
        mu, logvar = self.posterior_head(mixed).chunk(2, dim=2)
        return mu, logvar, mu if noise is None else reparameterise(mu, logvar, noise)

    def decode(self, s: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Frame logits [B, T, C, 64, 64] of p(x_t | z_t, s) (DSVAE's Eq. 1): Table 3's decoder
        applied to each frame's (s, z_t[, a]) alone, so frame t sees no other z."""
        codes = frame_codes(s, z, action)
        return self.decoder(codes.flatten(0, 1)).unflatten(0, z.shape[:2])


def frame_codes(s: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """(s, z_t, a) of every frame: [B, T, ds + dz + K]."""
    frames = z.shape[1]
    return torch.cat(
        [s[:, None].expand(-1, frames, -1), z, action[:, None].expand(-1, frames, -1)], dim=2
    )
