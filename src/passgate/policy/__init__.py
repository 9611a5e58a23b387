"""Policy sets, segments, policies and conditions; the decision engine."""
