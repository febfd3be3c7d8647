package dev.stagecraft.training.model;

import java.nio.FloatBuffer;
import java.util.SplittableRandom;

/** Small synthetic datasets, row-major, generated from a seed. */
record Datasets(float[] features, float[] labels, int rows, int numFeatures) {

  FloatBuffer featureRows(int from, int count) {
    return FloatBuffer.wrap(features, from * numFeatures, count * numFeatures);
  }

  FloatBuffer labelRows(int from, int count) {
    return FloatBuffer.wrap(labels, from, count);
  }

  /** Binary labels from a random hyperplane through the origin, rows closer than 0.1 to it left out. */
  static Datasets separable(long seed, int rows, int numFeatures) {
    SplittableRandom random = new SplittableRandom(seed);
    double[] w = new double[numFeatures];
    for (int j = 0; j < numFeatures; j++) {
      w[j] = random.nextGaussian();
    }
    float[] x = new float[rows * numFeatures];
    float[] y = new float[rows];
    for (int r = 0; r < rows; ) {
      double dot = 0;
      for (int j = 0; j < numFeatures; j++) {
        x[r * numFeatures + j] = (float) random.nextGaussian();
        dot += w[j] * x[r * numFeatures + j];
      }
      if (Math.abs(dot) >= 0.1) {
        y[r++] = dot > 0 ? 1 : 0;
      }
    }
    return new Datasets(x, y, rows, numFeatures);
  }

  /** Three Gaussian blobs in the plane (class index as label), standard deviation 1, centres 5 apart. */
  static Datasets blobs(long seed, int rows) {
    double[][] centres = {{0, 3}, {2.6, -1.5}, {-2.6, -1.5}};
    SplittableRandom random = new SplittableRandom(seed);
    float[] x = new float[rows * 2];
    float[] y = new float[rows];
    for (int r = 0; r < rows; r++) {
      int k = random.nextInt(3);
      x[2 * r] = (float) (centres[k][0] + random.nextGaussian());
      x[2 * r + 1] = (float) (centres[k][1] + random.nextGaussian());
      y[r] = k;
    }
    return new Datasets(x, y, rows, 2);
  }

  /** XOR of the signs of two uniform coordinates: not linearly separable. */
  static Datasets xor(long seed, int rows) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] x = new float[rows * 2];
    float[] y = new float[rows];
    for (int r = 0; r < rows; r++) {
      float a = (float) (random.nextDouble() * 2 - 1);
      float b = (float) (random.nextDouble() * 2 - 1);
      x[2 * r] = a;
      x[2 * r + 1] = b;
      y[r] = (a > 0) != (b > 0) ? 1 : 0;
    }
    return new Datasets(x, y, rows, 2);
  }

  /** y = 2x + 1 with x uniform in [-1, 1], no noise. */
  static Datasets line(long seed, int rows) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] x = new float[rows];
    float[] y = new float[rows];
    for (int r = 0; r < rows; r++) {
      x[r] = (float) (random.nextDouble() * 2 - 1);
      y[r] = 2 * x[r] + 1;
    }
    return new Datasets(x, y, rows, 1);
  }

  /** Gaussian features with arbitrary labels of the task's kind, for gradient checks. */
  static Datasets random(long seed, int rows, int numFeatures, Task task, int numClasses) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] x = new float[rows * numFeatures];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    float[] y = new float[rows];
    for (int r = 0; r < rows; r++) {
      y[r] = switch (task) {
        case BINARY -> random.nextInt(2);
        case MULTICLASS -> random.nextInt(numClasses);
        case REGRESSION -> (float) random.nextGaussian();
      };
    }
    return new Datasets(x, y, rows, numFeatures);
  }
}
