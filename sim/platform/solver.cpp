// SPDX-License-Identifier: Apache-2.0
// The max-min system of SimGrid's ptask model without its selective update (platform.hpp, drop_selective_update).
//
// SimGrid 3.32 installs no header for lmm::System. Its public static factory (exported by libsimgrid, and the one
// ptask_L07 itself calls) is declared here with the signature of src/kernel/lmm/System.hpp at tag v3.32; nothing else of
// the class is used: the pointer only travels from that factory to Model::set_maxmin_system (an installed header).
// setup.sh and CMake pin SimGrid 3.32; a library without the symbol fails at link time.
#include <array>
#include <string>
#include <string_view>

#include <simgrid/kernel/resource/Model.hpp>
#include <simgrid/kernel/routing/NetZoneImpl.hpp>
#include <simgrid/s4u/Engine.hpp>
#include <simgrid/s4u/NetZone.hpp>
#include <xbt/config.hpp>

namespace simgrid::kernel::lmm {
class System {
 public:
  static System* build(std::string_view solver_name, bool selective_update);
};
}  // namespace simgrid::kernel::lmm

#include "moesim/core/error.hpp"
#include "moesim/platform/platform.hpp"

namespace moesim::platform {

namespace {

namespace res = simgrid::kernel::resource;

/** The root zone's host, CPU and network models: ptask_L07's HostL07Model, CpuL07Model and NetworkL07Model. Each derives
 *  from resource::Model alone or first (HostModel, CpuModel; NetworkModel : Model, NetworkModelIntf), so its Model is
 *  at its address; the installed headers only forward-declare the three classes. */
std::array<res::Model*, 3> root_models() {
  auto* root = sg4::Engine::get_instance()->get_netzone_root();
  if (root == nullptr) throw Error("internal error: SimGrid's models do not exist before the first zone");
  auto* zone = root->get_impl();
  return {reinterpret_cast<res::Model*>(zone->get_host_model().get()),
          reinterpret_cast<res::Model*>(zone->get_cpu_pm_model().get()),
          reinterpret_cast<res::Model*>(zone->get_network_model().get())};
}

}  // namespace

simgrid::kernel::lmm::System* ptask_maxmin_system() {
  const std::array<res::Model*, 3> models = root_models();
  simgrid::kernel::lmm::System* const sys = models[0] != nullptr ? models[0]->get_maxmin_system() : nullptr;
  for (const res::Model* m : models)
    if (m == nullptr || sys == nullptr || m->get_maxmin_system() != sys)
      throw Error("internal error: SimGrid's host, CPU and network models do not share one max-min system "
                  "(moesim needs host/model ptask_L07 of SimGrid 3.32)");
  return sys;
}

simgrid::kernel::lmm::System* drop_selective_update() {
  if (sg4::Engine::get_instance()->get_host_count() != 0)
    throw Error("internal error: the max-min system can only be replaced before any host exists");
  ptask_maxmin_system();  // the three models share one system
  simgrid::kernel::lmm::System* const fresh =
      simgrid::kernel::lmm::System::build(simgrid::config::get_value<std::string>("host/solver"), false);
  // Model::set_maxmin_system releases the previous system without deleting it (SimGrid 3.32
  // src/kernel/resource/Model.cpp): the old one stays alive, holding only the loopback link's constraint
  // (NetworkL07Model's constructor), which no moesim flow uses (a plan has no flow from an endpoint to itself,
  // engine route_of checks it). The host model owns the new one, as it owned the old.
  for (res::Model* m : root_models()) m->set_maxmin_system(fresh);
  return fresh;
}

}  // namespace moesim::platform
