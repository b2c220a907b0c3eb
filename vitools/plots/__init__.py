"""Pure drawing functions: ``draw_x(ax, data, ...) -> artists``.

They compute nothing that matters (the numbers come from :mod:`vitools.diagnostics` and the
models) and never call ``plt.show``, so the explorers in :mod:`vitools.widgets` and the
notebooks share them. One module per topic; everything is re-exported here.
"""
from .style import use_style, estimator_color, new_figure, legend_outside
from .gradients import (draw_gradient_histograms, draw_variance_bars, draw_variance_curves,
                        draw_cost_and_gradient)
from .implicit import (draw_cdf_surface, draw_sample_gradient, draw_error_strips, draw_error_curves,
                       draw_elbo_history, draw_angles)
from .sbn import draw_digits, draw_group_variance, draw_bound_curves, draw_snr_vs_k
from .vae import draw_image_grid, draw_training_curves, draw_latent_scatter, draw_bounds_vs_k
from . import reproductions, smc
from .relaxed import draw_simplex_samples, draw_relaxed_bit_density, draw_bias_variance, draw_log_variance_curves
from .memory import run_values, draw_memory_scores, draw_address_posterior

__all__ = ["reproductions", "smc", "use_style", "estimator_color", "new_figure", "legend_outside", "draw_gradient_histograms",
           "draw_variance_bars", "draw_variance_curves", "draw_cost_and_gradient", "draw_cdf_surface",
           "draw_sample_gradient", "draw_error_strips", "draw_error_curves", "draw_elbo_history", "draw_angles",
           "draw_digits", "draw_group_variance", "draw_bound_curves", "draw_snr_vs_k",
           "draw_image_grid", "draw_training_curves", "draw_latent_scatter", "draw_bounds_vs_k",
           "draw_simplex_samples", "draw_relaxed_bit_density", "draw_bias_variance", "draw_log_variance_curves",
           "run_values", "draw_memory_scores", "draw_address_posterior"]
