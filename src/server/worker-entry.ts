// The module each cluster worker runs (see cluster.ts).
import { runWorker } from './cluster.js';

runWorker();
