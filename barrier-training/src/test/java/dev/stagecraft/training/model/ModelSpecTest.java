package dev.stagecraft.training.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ModelSpecTest {

  @Test
  void fromMapAppliesDefaults() {
    ModelSpec spec = ModelSpec.fromMap(Map.of("type", "logistic"));
    assertThat(spec.type()).isEqualTo(ModelSpec.Type.LOGISTIC);
    assertThat(spec.hidden()).isEmpty();
    assertThat(spec.activation()).isEqualTo(ModelSpec.Activation.RELU);
    assertThat(spec.dropout()).isZero();
    assertThat(spec.epochs()).isEqualTo(ModelSpec.EPOCHS_DEFAULT);
    assertThat(spec.batchSize()).isEqualTo(ModelSpec.BATCH_SIZE_DEFAULT);
    assertThat(spec.optimizer()).isEqualTo(ModelSpec.OptimizerName.ADAM);
    assertThat(spec.lr()).isEqualTo(ModelSpec.LR_DEFAULT_ADAM);
    assertThat(spec.momentum()).isEqualTo(0.9);
    assertThat(spec.seed()).isEqualTo(ModelSpec.SEED_DEFAULT);

    assertThat(ModelSpec.fromMap(Map.of("type", "linear", "optimizer", "sgd")).lr()).isEqualTo(ModelSpec.LR_DEFAULT_SGD);
  }

  @Test
  void fromMapReadsEveryFieldAndToMapRoundTrips() {
    Map<String, Object> values = new HashMap<>();
    values.put("type", "MLP");
    values.put("hidden", List.of(64, 32));
    values.put("activation", "tanh");
    values.put("dropout", 0.25);
    values.put("epochs", 3);
    values.put("batch_size", "512");
    values.put("optimizer", "sgd");
    values.put("lr", 0.05);
    values.put("momentum", 0);
    values.put("seed", 7L);
    values.put("label", "y"); // not a model key: left to the caller
    ModelSpec spec = ModelSpec.fromMap(values);
    assertThat(spec)
        .isEqualTo(new ModelSpec(ModelSpec.Type.MLP, List.of(64, 32), ModelSpec.Activation.TANH, 0.25, 3, 512,
            ModelSpec.OptimizerName.SGD, 0.05, 0.0, 7));
    assertThat(ModelSpec.fromMap(spec.toMap())).isEqualTo(spec);
    assertThat(ModelSpec.KEYS).containsAll(spec.toMap().keySet());
  }

  @Test
  void invalidValuesNameTheFieldTheValueAndWhatIsExpected() {
    assertInvalid(Map.of("type", "linear", "optimizer", "adamw"),
        "Invalid model field 'optimizer': 'adamw' (expected one of: sgd, adam)");
    assertInvalid(Map.of("type", "tree"), "Invalid model field 'type': 'tree' (expected one of: logistic, linear, mlp)");
    assertInvalid(Map.of(), "Invalid model field 'type': missing (expected one of: logistic, linear, mlp)");
    assertInvalid(Map.of("type", "mlp", "hidden", List.of(8), "activation", "gelu"),
        "Invalid model field 'activation': 'gelu' (expected one of: relu, tanh, sigmoid)");
    assertInvalid(Map.of("type", "mlp"), "Invalid model field 'hidden': [] (expected at least one hidden layer for type 'mlp')");
    assertInvalid(Map.of("type", "mlp", "hidden", List.of(8, 0)),
        "Invalid model field 'hidden': [8, 0] (expected layer widths of at least 1)");
    assertInvalid(Map.of("type", "mlp", "hidden", "64"),
        "Invalid model field 'hidden': '64' (expected a list of layer widths such as [64, 32])");
    assertInvalid(Map.of("type", "logistic", "hidden", List.of(8)),
        "Invalid model field 'hidden': [8] (expected no hidden layers for type 'logistic'; use type 'mlp')");
    assertInvalid(Map.of("type", "mlp", "hidden", List.of(8), "dropout", 1.0),
        "Invalid model field 'dropout': 1.0 (expected 0 <= dropout < 1)");
    assertInvalid(Map.of("type", "logistic", "dropout", 0.5),
        "Invalid model field 'dropout': 0.5 (expected 0 for type 'logistic', which has no hidden layer)");
    assertInvalid(Map.of("type", "logistic", "epochs", 0), "Invalid model field 'epochs': 0 (expected at least 1)");
    assertInvalid(Map.of("type", "logistic", "batch_size", -5), "Invalid model field 'batch_size': -5 (expected at least 1)");
    assertInvalid(Map.of("type", "logistic", "batch_size", "many"),
        "Invalid model field 'batch_size': 'many' (expected an integer)");
    assertInvalid(Map.of("type", "logistic", "lr", 0), "Invalid model field 'lr': 0.0 (expected a positive finite number)");
    assertInvalid(Map.of("type", "logistic", "lr", "NaN"), "Invalid model field 'lr': NaN (expected a positive finite number)");
    assertInvalid(Map.of("type", "logistic", "momentum", 1), "Invalid model field 'momentum': 1.0 (expected 0 <= momentum < 1)");
    assertInvalid(Map.of("type", "logistic", "seed", 1.5), "Invalid model field 'seed': 1.5 (expected an integer)");
  }

  @Test
  void momentumZeroIsAllowed() {
    assertThat(ModelSpec.fromMap(Map.of("type", "logistic", "optimizer", "sgd", "momentum", 0)).momentum()).isZero();
  }

  @Test
  void checkTaskMatchesNetworksToTasks() {
    ModelSpec logistic = ModelSpec.fromMap(Map.of("type", "logistic"));
    ModelSpec linear = ModelSpec.fromMap(Map.of("type", "linear"));
    ModelSpec mlp = ModelSpec.fromMap(Map.of("type", "mlp", "hidden", List.of(4)));
    logistic.checkTask(Task.BINARY);
    logistic.checkTask(Task.MULTICLASS);
    linear.checkTask(Task.REGRESSION);
    for (Task task : Task.values()) {
      mlp.checkTask(task);
    }
    assertThatThrownBy(() -> logistic.checkTask(Task.REGRESSION))
        .hasMessage("Invalid model field 'type': 'logistic' (expected one of: linear, mlp for a regression task)");
    assertThatThrownBy(() -> linear.checkTask(Task.BINARY))
        .hasMessage("Invalid model field 'type': 'linear' (expected one of: logistic, mlp for a binary task)");
  }

  @Test
  void taskOutputs() {
    assertThat(Task.BINARY.numOutputs(2)).isEqualTo(1);
    assertThat(Task.REGRESSION.numOutputs(0)).isEqualTo(1);
    assertThat(Task.MULTICLASS.numOutputs(3)).isEqualTo(3);
    assertThatThrownBy(() -> Task.MULTICLASS.numOutputs(1))
        .hasMessage("Invalid number of classes: 1 (expected at least 2 for a multiclass task)");
  }

  @Test
  void hiddenIsCopied() {
    List<Integer> hidden = new java.util.ArrayList<>(List.of(4));
    ModelSpec spec = new ModelSpec(ModelSpec.Type.MLP, hidden, ModelSpec.Activation.RELU, 0, 1, 1,
        ModelSpec.OptimizerName.ADAM, 0.1, 0.9, 1);
    hidden.add(5);
    assertThat(spec.hidden()).containsExactly(4);
    assertThatThrownBy(() -> spec.hidden().add(1)).isInstanceOf(UnsupportedOperationException.class);
  }

  private static void assertInvalid(Map<String, ?> values, String message) {
    assertThatThrownBy(() -> ModelSpec.fromMap(values))
        .isInstanceOfSatisfying(StagecraftException.class, e -> assertThat(e.category()).isEqualTo(ErrorCategory.USER))
        .hasMessage(message);
  }
}
