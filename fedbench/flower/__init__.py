"""fedbench on Flower: a ServerApp and a ClientApp (Flower's Message API) running a fedbench
run config with the simulator's data split, model, method and accounting.

`fedbench.flower.server:app` and `fedbench.flower.client:app` are the Flower components;
`fedbench.flower.deploy` starts a local deployment (SuperLink + SuperNodes) or Flower's
simulation runtime for a config. Needs the `flower` extra (pip install 'fedbench[flower]');
the rest of fedbench never imports flwr.
"""
