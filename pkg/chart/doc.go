// Package chart holds only tests of the Helm chart in charts/eventpipe: they
// render it with the Helm SDK for several sets of values, decode every
// object strictly with client-go's scheme plus the KEDA and
// prometheus-operator API types, and check what must hold for the system to
// work on Kubernetes: the autoscaler reads the consumer the collectors use,
// probes hit real endpoints, every container is locked down, selectors
// select, the migrations run when the database can take them. Further tiers
// apply the objects to a real API server, read JetStream lag the way KEDA
// does, and install everything on kind where Docker is available.
package chart
