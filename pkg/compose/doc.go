// Package compose holds only tests: they load docker-compose.yml and its
// environments with the Compose specification's own loader, check the
// wiring against the services' configuration code and the Dockerfile, and
// run the whole system with exactly the settings compose gives it. The
// image build command of manifests/docker/Dockerfile runs here too, so CI
// builds what the images ship.
package compose
