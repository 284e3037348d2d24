"""The xDS control plane: operator config + fleet load -> Envoy resources over ADS."""
