package cluster

import (
	"net/http"
)

// handlerFunc is an Engine API handler that returns its error instead of
// writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(pattern string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.log.Debug("engine API error", "method", r.Method, "path", r.URL.Path, "status", statusOf(err), "error", err)
			writeError(w, err)
		}
	})
}

// routes registers the endpoints swarmd serves itself.
func (s *Server) routes() {
	s.handle("GET /info", s.getInfo)
	s.handle("GET /events", s.getEvents)

	s.handle("GET /swarm", s.getSwarm)
	s.handle("POST /swarm/init", s.postSwarmInit)
	s.handle("POST /swarm/join", s.postSwarmJoin)
	s.handle("POST /swarm/leave", s.postSwarmLeave)
	s.handle("POST /swarm/update", s.postSwarmUpdate)
	s.handle("GET /swarm/unlockkey", s.getUnlockKey)
	s.handle("POST /swarm/unlock", s.postSwarmUnlock)

	s.handle("GET /nodes", s.getNodes)
	s.handle("GET /nodes/{id}", s.getNode)
	s.handle("POST /nodes/{id}/update", s.postNodeUpdate)
	s.handle("DELETE /nodes/{id}", s.deleteNode)

	s.handle("GET /services", s.getServices)
	s.handle("POST /services/create", s.postServiceCreate)
	s.handle("GET /services/{id}", s.getService)
	s.handle("POST /services/{id}/update", s.postServiceUpdate)
	s.handle("DELETE /services/{id}", s.deleteService)
	s.handle("GET /services/{id}/logs", s.getServiceLogs)

	s.handle("GET /tasks", s.getTasks)
	s.handle("GET /tasks/{id}", s.getTask)
	s.handle("GET /tasks/{id}/logs", s.getTaskLogs)

	s.handle("GET /networks", s.getNetworks)
	s.handle("POST /networks/create", s.postNetworkCreate)
	s.handle("POST /networks/prune", s.postNetworksPrune)
	s.handle("GET /networks/{id}", s.getNetwork)
	s.handle("DELETE /networks/{id}", s.deleteNetwork)
	s.handle("POST /networks/{id}/connect", s.postNetworkAttach("connect"))
	s.handle("POST /networks/{id}/disconnect", s.postNetworkAttach("disconnect"))

	// GET /secrets, POST /secrets/create, GET /secrets/{id},
	// POST /secrets/{id}/update, DELETE /secrets/{id}; the same for /configs.
	dataRoutes(s, s.cluster.control, secretKind())
	dataRoutes(s, s.cluster.control, configKind())
}
