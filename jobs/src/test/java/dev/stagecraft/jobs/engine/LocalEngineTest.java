package dev.stagecraft.jobs.engine;

/** The engine on a {@code file:} workspace. */
class LocalEngineTest extends EngineScenarios {
  @Override
  String newWorkspace(String name) {
    return dir.resolve("ws-" + name).toUri().toString();
  }
}
